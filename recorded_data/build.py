"""Rebuild the bundled copy of the recorded data from a data directory.

``python -m recorded_data.build --from ../shared/data`` writes ``recorded_data/bundle/``: the
deterministic ``data.tar.xz`` (sorted names, zero mtimes and owners, so the same data gives the
same bytes and the same bundle hash), ``MANIFEST.sha256`` of every original file, the data
directory's README as ``PROVENANCE.md`` and every licence file uncompressed under ``licenses/``.
"""

from __future__ import annotations

import argparse
import io
import lzma
import shutil
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

from recorded_data.bundle import (
    ARCHIVE_NAME,
    BUNDLE_DIR,
    LICENSES_DIR,
    MANIFEST_NAME,
    PROVENANCE_NAME,
    data_files,
    format_manifest,
    sha256_file,
)

_PROVENANCE_HEADER = """\
# Provenance of the bundled recorded data

`data.tar.xz` holds every file of the project's recorded-data directory, byte for byte
(`MANIFEST.sha256` lists the sha256 of each). It is bundled so that a bare clone or an installed
package can run the demo, the replay upstream, the benchmark and predictor training; nobody on
this project wrote these outcomes. Licences of the sources are under `licenses/`. The data
directory's own README follows verbatim (its advice to read the files from `../shared/data` is
what `--data-dir` / `ADAPTIVE_DATA_DIR` still do; without either, the bundled copy is used).

---

"""


def _is_licence(name: str) -> bool:
    return "LICENSE" in Path(name).name.upper()


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def build_bundle(source: Path, out_dir: Path = BUNDLE_DIR) -> Path:
    """Write the bundle for the data directory ``source`` into ``out_dir``; returns the archive."""
    names = data_files(source)
    if not names:
        raise SystemExit(f"error: {source} holds no files")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {name: sha256_file(source / name) for name in names}
    archive = out_dir / ARCHIVE_NAME
    partial = archive.with_suffix(".partial")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            data = (source / name).read_bytes()
            tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))
    partial.write_bytes(
        lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME, check=lzma.CHECK_CRC64)
    )
    partial.replace(archive)
    (out_dir / MANIFEST_NAME).write_text(format_manifest(manifest), encoding="utf-8")
    readme = source / "README.md"
    body = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    (out_dir / PROVENANCE_NAME).write_text(_PROVENANCE_HEADER + body, encoding="utf-8")
    licences = out_dir / LICENSES_DIR
    shutil.rmtree(licences, ignore_errors=True)
    for name in names:
        if _is_licence(name):
            # Flat names keep which source a licence covers: routellm/LICENSE → routellm-LICENSE.
            flat = name.replace("/licenses/", "/").replace("/", "-")
            licences.mkdir(exist_ok=True)
            shutil.copyfile(source / name, licences / flat)
    return archive


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m recorded_data.build``."""
    parser = argparse.ArgumentParser(
        prog="python -m recorded_data.build", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("--from", dest="source", type=Path, required=True, help="data directory")
    parser.add_argument("--out", type=Path, default=BUNDLE_DIR, help="bundle directory")
    args = parser.parse_args(argv)
    source: Path = args.source.resolve()
    if not source.is_dir():
        print(f"error: data directory {source} not found", file=sys.stderr)
        return 2
    archive = build_bundle(source, args.out)
    size_mb = archive.stat().st_size / 1e6
    print(f"wrote {archive} ({size_mb:.1f} MB, sha256 {sha256_file(archive)[:16]}…)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
