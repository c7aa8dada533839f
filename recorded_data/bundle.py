"""The bundled copy of the recorded data: where its files are, and its sha256 manifest.

The bundle is ``bundle/data.tar.xz`` (every file of the data directory, deterministic tar) beside
``bundle/MANIFEST.sha256`` (``sha256sum`` format: one ``<hex>  <relative path>`` line per original
file), ``bundle/PROVENANCE.md`` and the licence files. ``sha256sum -c MANIFEST.sha256`` run inside
an extracted copy checks it by hand.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

BUNDLE_DIR = Path(__file__).resolve().parent / "bundle"
ARCHIVE_NAME = "data.tar.xz"
MANIFEST_NAME = "MANIFEST.sha256"
PROVENANCE_NAME = "PROVENANCE.md"
LICENSES_DIR = "licenses"
_CHUNK = 1 << 20


class RecordedDataError(Exception):
    """Base class of every error about the recorded data."""


class DataNotFoundError(RecordedDataError, FileNotFoundError):
    """No recorded data in any of the places looked at (each named in the message)."""


class BundleCorruptError(RecordedDataError):
    """The bundle or an extracted copy does not match the manifest."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_relative(name: str) -> str:
    # Manifest paths become file names under the cache dir: only plain relative paths pass.
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or any(p in ("", ".", "..") for p in path.parts):
        raise BundleCorruptError(f"unsafe path in manifest: {name!r}")
    return path.as_posix()


def parse_manifest(text: str) -> dict[str, str]:
    """``{relative path: sha256}`` from ``sha256sum`` output; rejects unsafe or odd lines."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BundleCorruptError(f"{MANIFEST_NAME} line {number}: not `<sha256>  <path>`")
        entries[_check_relative(name)] = digest
    if not entries:
        raise BundleCorruptError(f"{MANIFEST_NAME} lists no files")
    return entries


def format_manifest(entries: Mapping[str, str]) -> str:
    """The ``sha256sum``-format text of a manifest, sorted by path."""
    return "".join(f"{entries[name]}  {name}\n" for name in sorted(entries))


def read_manifest(path: Path) -> dict[str, str]:
    """Parse the manifest file at ``path``."""
    return parse_manifest(path.read_text(encoding="utf-8"))


def data_files(root: Path) -> list[str]:
    """Every regular file under ``root`` as sorted relative POSIX paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def verify_tree(root: Path, manifest: Mapping[str, str]) -> list[str]:
    """Problems of ``root`` against ``manifest`` (missing or changed files); empty if it matches."""
    problems: list[str] = []
    for name, expected in sorted(manifest.items()):
        path = root / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(path) != expected:
            problems.append(f"{name}: sha256 differs from the manifest")
    return problems


def describe(problems: Iterable[str], limit: int = 5) -> str:
    """The first few problems on one line."""
    items = list(problems)
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more
