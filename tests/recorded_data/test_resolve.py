"""Where the recorded data comes from: flag, environment, then the verified bundled copy."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from recorded_data import BundleCorruptError, DataNotFoundError, resolve_data_dir
from recorded_data.build import build_bundle
from recorded_data.bundle import ARCHIVE_NAME, MANIFEST_NAME, read_manifest
from recorded_data.resolve import bundle_hash

FILES = {
    "README.md": "# toy data\n",
    "routellm/LICENSE": "Apache-2.0\n",
    "routellm/gsm8k/gsm8k_responses.csv": "prompt,a,b\nq,True,False\n",
    "multisample/licenses/CodeT-LICENSE": "MIT\n",
}


def _write_tree(root: Path) -> Path:
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A bundle built by the real build script from a toy data directory."""
    out = tmp_path / "bundle"
    build_bundle(_write_tree(tmp_path / "src"), out)
    return out


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"XDG_CACHE_HOME": str(tmp_path / "cache"), **extra}


def test_flag_wins_over_environment_and_bundle(tmp_path: Path, bundle: Path) -> None:
    flag = _write_tree(tmp_path / "flag")
    other = _write_tree(tmp_path / "other")
    env = _env(tmp_path, ADAPTIVE_DATA_DIR=str(other))
    assert resolve_data_dir(flag, env=env, bundle_dir=bundle) == flag.resolve()


def test_environment_wins_over_bundle(tmp_path: Path, bundle: Path) -> None:
    other = _write_tree(tmp_path / "other")
    env = _env(tmp_path, ADAPTIVE_DATA_DIR=str(other))
    assert resolve_data_dir(None, env=env, bundle_dir=bundle) == other.resolve()


def test_a_named_directory_without_data_is_an_error_not_a_fallback(
    tmp_path: Path, bundle: Path
) -> None:
    with pytest.raises(DataNotFoundError, match="--data-dir"):
        resolve_data_dir(tmp_path / "nope", env=_env(tmp_path), bundle_dir=bundle)
    env = _env(tmp_path, ADAPTIVE_DATA_DIR=str(tmp_path / "nope"))
    with pytest.raises(DataNotFoundError, match="ADAPTIVE_DATA_DIR"):
        resolve_data_dir(None, env=env, bundle_dir=bundle)


def test_bundle_extracts_byte_identical_copy_into_the_cache(tmp_path: Path, bundle: Path) -> None:
    found = resolve_data_dir(None, env=_env(tmp_path), bundle_dir=bundle)
    expected = tmp_path / "cache" / "adaptive-proxy" / "data" / bundle_hash(bundle / ARCHIVE_NAME)
    assert found == expected
    for name, text in FILES.items():
        assert (found / name).read_text() == text
    assert set(read_manifest(bundle / MANIFEST_NAME)) == set(FILES)
    assert (bundle / "licenses" / "routellm-LICENSE").read_text() == "Apache-2.0\n"
    assert (bundle / "licenses" / "multisample-CodeT-LICENSE").is_file()
    assert "# toy data" in (bundle / "PROVENANCE.md").read_text()


def test_home_cache_is_used_without_xdg(tmp_path: Path, bundle: Path) -> None:
    # Path.home() reads HOME; a child process keeps this test from touching the real home.
    code = (
        "import sys; from pathlib import Path; from recorded_data import resolve_data_dir; "
        f"print(resolve_data_dir(env={{}}, bundle_dir=Path({str(bundle)!r})))"
    )
    env = {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "PYTHONPATH": _root()}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(tmp_path / "home" / ".cache" / "adaptive-proxy"))


def _root() -> str:
    return str(Path(__file__).resolve().parents[2])


def test_build_is_deterministic(tmp_path: Path, bundle: Path) -> None:
    again = tmp_path / "again"
    build_bundle(tmp_path / "src", again)
    assert (again / ARCHIVE_NAME).read_bytes() == (bundle / ARCHIVE_NAME).read_bytes()


def test_a_corrupted_extraction_is_detected_and_redone(tmp_path: Path, bundle: Path) -> None:
    found = resolve_data_dir(None, env=_env(tmp_path), bundle_dir=bundle)
    target = found / "routellm" / "gsm8k" / "gsm8k_responses.csv"
    target.write_text("prompt,a,b\nq,True,True\n")  # same length, different bytes
    (found / "README.md").unlink()
    again = resolve_data_dir(None, env=_env(tmp_path), bundle_dir=bundle)
    assert again == found
    assert target.read_text() == FILES["routellm/gsm8k/gsm8k_responses.csv"]
    assert (again / "README.md").read_text() == FILES["README.md"]
    leftovers = [p.name for p in found.parent.iterdir() if p.name.startswith(".") and p.is_dir()]
    assert leftovers == []


def test_an_archive_that_disagrees_with_its_manifest_is_refused(
    tmp_path: Path, bundle: Path
) -> None:
    manifest = bundle / MANIFEST_NAME
    manifest.write_text(manifest.read_text().replace("README.md", "README.txt"))
    with pytest.raises(BundleCorruptError, match=r"unexpected member 'README\.md'"):
        resolve_data_dir(None, env=_env(tmp_path), bundle_dir=bundle)
    cache = tmp_path / "cache" / "adaptive-proxy" / "data"
    assert [p for p in cache.iterdir() if p.is_dir()] == []  # no half copy left behind


def test_a_damaged_archive_is_refused(tmp_path: Path, bundle: Path) -> None:
    archive = bundle / ARCHIVE_NAME
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(BundleCorruptError):
        resolve_data_dir(None, env=_env(tmp_path), bundle_dir=bundle)


def test_no_data_anywhere_names_every_place_checked(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        resolve_data_dir(None, env=_env(tmp_path), bundle_dir=tmp_path / "absent")
    message = str(info.value)
    assert "--data-dir" in message and "ADAPTIVE_DATA_DIR" in message
    assert str(tmp_path / "absent" / ARCHIVE_NAME) in message


def _resolve_in_child(bundle: str, cache: str, queue: multiprocessing.Queue[str]) -> None:
    env = {"XDG_CACHE_HOME": cache}
    queue.put(str(resolve_data_dir(None, env=env, bundle_dir=Path(bundle))))


def test_concurrent_first_runs_end_with_one_complete_copy(tmp_path: Path, bundle: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[str] = ctx.Queue()
    cache = str(tmp_path / "cache")
    workers = [
        ctx.Process(target=_resolve_in_child, args=(str(bundle), cache, queue)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    paths = {queue.get(timeout=5) for _ in workers}
    assert len(paths) == 1
    found = Path(paths.pop())
    for name, text in FILES.items():
        assert (found / name).read_text() == text
    entries = [p.name for p in found.parent.iterdir() if p.is_dir()]
    assert entries == [found.name]  # no staging or stale folders left behind


def test_an_unwritable_cache_is_a_clear_error(tmp_path: Path, bundle: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")  # a file where the cache folder should go
    with pytest.raises(DataNotFoundError, match="XDG_CACHE_HOME"):
        resolve_data_dir(None, env={"XDG_CACHE_HOME": str(blocker)}, bundle_dir=bundle)
