"""Learned heads on disk: one folder per policy, one file per version, a manifest with hashes.

``<models_dir>/<policy>/<version>.json`` holds a head's canonical JSON (so the file's sha256 is
the document's sha256, the same value the store keeps); ``manifest.json``
(``adaptive-learned-manifest/1``) names the current version and the sha256 of every version file.
Every write goes to a temporary file in the same folder, is fsynced, then renamed over the target:
a learner killed at any point leaves the previous manifest and head files whole (at worst a stray
``.*.tmp`` file, which nothing reads). The store, not this folder, is what replicas follow; the
folder is the audit trail and the offline copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from predictor_onnx.manifest import sha256_file
from proxy.learn.head import HeadDocumentError, LearnedHead, canonical_bytes
from proxy.learn.store import user_data_dir

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "adaptive-learned-manifest/1"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def default_models_dir(env: Mapping[str, str] | None = None) -> Path:
    """``<user data dir>/models``: where learned heads are exported unless configured."""
    return user_data_dir(env) / "models"


def atomic_write(
    path: Path, data: bytes, *, replace: Callable[[Path, Path], None] = os.replace
) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (``replace``)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    # The rename is durable once the folder's entry is; not every platform can open a folder.
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class HeadExporter:
    """Writes and reads the per-policy folders under ``directory``.

    ``replace`` is the rename used for every write (``os.replace``); a caller may pass another
    (to place the files elsewhere, or to fail one in a test).
    """

    def __init__(
        self, directory: Path, *, replace: Callable[[Path, Path], None] = os.replace
    ) -> None:
        self.directory = Path(directory)
        self._replace = replace

    def policy_dir(self, policy: str) -> Path:
        """The folder of ``policy`` (unsafe file-name characters become ``_``)."""
        return self.directory / _UNSAFE.sub("_", policy)

    def head_path(self, policy: str, version: str) -> Path:
        """The file of one version."""
        return self.policy_dir(policy) / f"{_UNSAFE.sub('_', version)}.json"

    def write_head(self, head: LearnedHead) -> Path:
        """Write a version's file (not yet current); returns its path."""
        folder = self.policy_dir(head.policy)
        folder.mkdir(parents=True, exist_ok=True)
        path = self.head_path(head.policy, head.version)
        atomic_write(path, canonical_bytes(head.to_document()), replace=self._replace)
        return path

    def manifest(self, policy: str) -> dict[str, Any]:
        """The policy's manifest (an empty one when none was written)."""
        path = self.policy_dir(policy) / MANIFEST_NAME
        if not path.is_file():
            return {"format": MANIFEST_FORMAT, "policy": policy, "current": None, "files": {}}
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data

    def set_current(self, policy: str, version: str | None) -> Path:
        """Name ``version`` (``None``: the shipped prior) current, hashing every version file."""
        folder = self.policy_dir(policy)
        folder.mkdir(parents=True, exist_ok=True)
        files = {
            p.name: sha256_file(p)
            for p in sorted(folder.glob("*.json"))
            if p.name != MANIFEST_NAME and not p.name.startswith(".")
        }
        current = None if version is None else self.head_path(policy, version).name
        if current is not None and current not in files:
            raise FileNotFoundError(f"no exported head {folder / current}")
        document = {
            "format": MANIFEST_FORMAT,
            "policy": policy,
            "current": version,
            "current_file": current,
            "files": files,
        }
        path = folder / MANIFEST_NAME
        payload = json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"
        atomic_write(path, payload, replace=self._replace)
        return path

    def load_current(self, policy: str) -> LearnedHead | None:
        """The manifest's current head, hash-checked; ``None`` when the prior is current."""
        manifest = self.manifest(policy)
        name = manifest.get("current_file")
        if not name:
            return None
        path = self.policy_dir(policy) / str(name)
        expected = manifest["files"].get(name)
        if expected is None or sha256_file(path) != expected:
            raise HeadDocumentError(f"{path}: sha256 differs from {MANIFEST_NAME}")
        return LearnedHead.from_document(json.loads(path.read_bytes()), sha256=expected)
