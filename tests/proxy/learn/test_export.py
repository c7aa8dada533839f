"""Export folders: atomic writes, a manifest with hashes, a current version checked on load."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.learn.export import HeadExporter, atomic_write, default_models_dir
from proxy.learn.head import HeadDocumentError, HeadTarget, LearnedHead


def _head(version: str) -> LearnedHead:
    return LearnedHead(
        "router/a b",
        version,
        2,
        (HeadTarget("sample", "p_weak", (0.5, -0.5), 0.1, 0.0),),
        {},
        {},
    )


def test_a_failed_rename_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "current.json"
    target.write_bytes(b"old")

    def fail(src: Path, dst: Path) -> None:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        atomic_write(target, b"new", replace=fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["current.json"]
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"


def test_manifest_names_the_current_version_with_hashes(tmp_path: Path) -> None:
    exporter = HeadExporter(tmp_path)
    assert exporter.load_current("router/a b") is None
    exporter.write_head(_head("v1"))
    exporter.write_head(_head("v2"))
    exporter.set_current("router/a b", "v2")
    folder = exporter.policy_dir("router/a b")
    assert folder == tmp_path / "router_a_b"
    manifest = exporter.manifest("router/a b")
    assert manifest["current"] == "v2"
    assert sorted(manifest["files"]) == ["v1.json", "v2.json"]
    loaded = exporter.load_current("router/a b")
    assert loaded is not None and loaded.version == "v2"
    with pytest.raises(FileNotFoundError):
        exporter.set_current("router/a b", "v3")
    (folder / "v2.json").write_bytes((folder / "v2.json").read_bytes().replace(b"0.5", b"0.6"))
    with pytest.raises(HeadDocumentError, match="sha256"):
        exporter.load_current("router/a b")


def test_default_models_dir_is_under_the_user_data_dir() -> None:
    assert default_models_dir({"XDG_DATA_HOME": "/d"}) == Path("/d/adaptive-proxy/models")
