"""Where the recorded data is: ``--data-dir``, then ``$ADAPTIVE_DATA_DIR``, then the bundled copy.

Every reader (demo, replay upstream, benchmark, predictor training) calls :func:`resolve_data_dir`.
The bundled copy is extracted once per bundle into the user cache
(``$XDG_CACHE_HOME/adaptive-proxy/data/<bundle-hash>``, default ``~/.cache/…``): into a private
temporary folder beside it, each file checked against the manifest while written, then renamed
into place, so a reader never sees half a copy and two processes starting at once both end with
the same complete one. Every lookup re-hashes the extracted files (about 50 ms for 40 MB); a copy
that no longer matches is moved aside and extracted again.
"""

from __future__ import annotations

import contextlib
import hashlib
import lzma
import os
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from recorded_data.bundle import (
    ARCHIVE_NAME,
    BUNDLE_DIR,
    MANIFEST_NAME,
    BundleCorruptError,
    DataNotFoundError,
    describe,
    read_manifest,
    sha256_file,
    verify_tree,
)

ENV_VAR = "ADAPTIVE_DATA_DIR"
_HASH_CHARS = 16
_ATTEMPTS = 3


def cache_root(env: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/adaptive-proxy/data``, or ``~/.cache/adaptive-proxy/data``."""
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "adaptive-proxy" / "data"


def _looks_like_data(path: Path) -> bool:
    return (path / "routellm").is_dir()


def resolve_data_dir(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    bundle_dir: Path = BUNDLE_DIR,
) -> Path:
    """The recorded-data directory to read.

    ``data_dir`` (a ``--data-dir`` flag) wins, then ``$ADAPTIVE_DATA_DIR``; either must exist,
    it is never silently replaced by the bundle. Otherwise the bundled copy is extracted (once)
    and verified. Raises :class:`DataNotFoundError` naming every place looked at.
    """
    environ = os.environ if env is None else env
    if data_dir is not None and str(data_dir):
        return _existing(Path(data_dir), "--data-dir")
    if environ.get(ENV_VAR):
        return _existing(Path(environ[ENV_VAR]), f"${ENV_VAR}")
    archive = bundle_dir / ARCHIVE_NAME
    manifest_path = bundle_dir / MANIFEST_NAME
    if not (archive.is_file() and manifest_path.is_file()):
        raise DataNotFoundError(
            "no recorded data: --data-dir not given, "
            f"${ENV_VAR} not set, and no bundled copy at {archive} "
            "(reinstall adaptive-proxy, or pass --data-dir DIR)"
        )
    root = cache_root(environ)
    try:
        return extract_bundle(archive, read_manifest(manifest_path), root)
    except OSError as exc:
        raise DataNotFoundError(
            f"cannot extract the bundled data into {root}: {exc.strerror or exc}; set "
            "XDG_CACHE_HOME to a writable folder, or pass --data-dir DIR"
        ) from exc


def _existing(path: Path, origin: str) -> Path:
    resolved = path.expanduser().resolve()
    if not _looks_like_data(resolved):
        raise DataNotFoundError(
            f"no recorded data at {resolved} (from {origin}): expected a routellm/ folder there; "
            f"without {origin} the bundled copy is used"
        )
    return resolved


def bundle_hash(archive: Path) -> str:
    """Short sha256 of the archive: the name of its extracted copy in the cache."""
    return sha256_file(archive)[:_HASH_CHARS]


def extract_bundle(archive: Path, manifest: Mapping[str, str], root: Path) -> Path:
    """The verified extracted copy of ``archive`` under ``root``, extracting it if needed."""
    target = root / bundle_hash(archive)
    for _ in range(_ATTEMPTS):
        if target.is_dir() and not verify_tree(target, manifest):
            return target
        root.mkdir(parents=True, exist_ok=True)
        # Only the lock holder moves or creates the copy, so a process never removes a copy
        # that another one has just verified and returned.
        with _extraction_lock(root / f".{target.name}.lock"):
            if target.is_dir():
                if not verify_tree(target, manifest):
                    return target
                _move_aside(target)
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
            try:
                _extract_verified(archive, manifest, staging)
                with contextlib.suppress(OSError):  # lost a race where no lock exists
                    os.replace(staging, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    raise BundleCorruptError(f"extracted copy at {target} keeps failing verification")


def _move_aside(target: Path) -> None:
    # Renaming first makes the removal atomic for readers; a concurrent mover may win the race.
    stale = target.with_name(f".{target.name}.stale-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(FileNotFoundError):
        target.rename(stale)
    shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def _extraction_lock(path: Path) -> Iterator[None]:
    # The lock only saves duplicate work; correctness comes from the atomic rename.
    try:
        import fcntl
    except ImportError:  # Windows: no flock, the rename alone keeps readers safe
        yield
        return
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _extract_verified(archive: Path, manifest: Mapping[str, str], dest: Path) -> None:
    seen: set[str] = set()
    try:
        with tarfile.open(archive, mode="r:xz") as tar:
            for member in tar:
                if member.name not in manifest or not member.isfile():
                    raise BundleCorruptError(f"{archive}: unexpected member {member.name!r}")
                source = tar.extractfile(member)
                if source is None:
                    raise BundleCorruptError(f"{archive}: unreadable member {member.name!r}")
                out_path = dest / member.name
                out_path.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with source, out_path.open("wb") as out:
                    while chunk := source.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != manifest[member.name]:
                    raise BundleCorruptError(f"{archive}: {member.name} differs from the manifest")
                seen.add(member.name)
    except (tarfile.TarError, lzma.LZMAError, EOFError) as exc:
        raise BundleCorruptError(f"{archive} is not a readable tar.xz: {exc}") from exc
    missing = sorted(set(manifest) - seen)
    if missing:
        raise BundleCorruptError(f"{archive} lacks {describe(missing)}")
