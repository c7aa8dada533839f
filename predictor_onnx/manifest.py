"""``manifest.json`` of a predictor folder: what the files are, their hashes, the output names.

Verified at load time so that a missing, truncated or swapped file fails at startup, naming the
file and the command that rebuilds it, never on the first request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predictor_onnx.errors import PredictorLoadError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
REBUILD_HINT = (
    "rebuild it with `adaptive-proxy predictor train` "
    "(needs `pip install 'adaptive-proxy[train]'`), or with "
    "`adaptive-proxy predictor train --jsonl YOUR.jsonl --out DIR` for your own predictor"
)


@dataclass(frozen=True)
class Manifest:
    """The parsed manifest of a predictor folder."""

    directory: Path
    version: str
    encoder: str
    head: str
    tokenizer: str
    max_tokens: int
    embedding_dim: int
    arms: tuple[str, ...]
    gains: dict[str, tuple[str, str]]
    output_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    files: dict[str, str]
    raw: dict[str, Any]

    def path(self, name: str) -> Path:
        """Absolute path of a file of the folder."""
        return self.directory / name


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path, data: dict[str, Any]) -> Path:
    """Write ``manifest.json`` with the sha256 of every file the manifest names."""
    names = [data["encoder"], data["head"], data["tokenizer"]]
    data = {
        **data,
        "format_version": FORMAT_VERSION,
        "files": {n: sha256_file(directory / n) for n in names},
    }
    path = directory / MANIFEST_NAME
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def read_manifest(directory: Path, *, verify_hashes: bool = True) -> Manifest:
    """Parse and check a predictor folder; :class:`PredictorLoadError` on any problem."""
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise PredictorLoadError(f"predictor manifest missing: {path}; {REBUILD_HINT}")
    try:
        data = json.loads(path.read_text())
        files = {str(k): str(v) for k, v in data["files"].items()}
        manifest = Manifest(
            directory=directory,
            version=str(data["version"]),
            encoder=str(data["encoder"]),
            head=str(data["head"]),
            tokenizer=str(data["tokenizer"]),
            max_tokens=int(data["max_tokens"]),
            embedding_dim=int(data["embedding_dim"]),
            arms=tuple(str(a) for a in data["arms"]),
            gains={str(k): (str(v[0]), str(v[1])) for k, v in data["gains"].items()},
            output_names=tuple(str(n) for n in data["output_names"]),
            feature_names=tuple(str(n) for n in data["feature_names"]),
            files=files,
            raw=data,
        )
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise PredictorLoadError(
            f"predictor manifest corrupt: {path} ({exc}); {REBUILD_HINT}"
        ) from exc
    if int(data.get("format_version", 0)) != FORMAT_VERSION:
        raise PredictorLoadError(
            f"predictor manifest {path} has format_version {data.get('format_version')}, "
            f"this runtime reads {FORMAT_VERSION}; {REBUILD_HINT}"
        )
    for name in (manifest.encoder, manifest.head, manifest.tokenizer):
        file = directory / name
        if not file.is_file():
            raise PredictorLoadError(f"predictor file missing: {file}; {REBUILD_HINT}")
        if name not in files:
            raise PredictorLoadError(
                f"predictor manifest {path} has no hash for {name}; {REBUILD_HINT}"
            )
        if verify_hashes and sha256_file(file) != files[name]:
            raise PredictorLoadError(
                f"predictor file corrupt (sha256 differs from {path}): {file}; {REBUILD_HINT}"
            )
    return manifest
