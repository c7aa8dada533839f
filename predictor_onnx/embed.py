"""Embedding many prompts with an ONNX encoder, cached on disk.

The cache key of a prompt is sha256(encoder file sha256 + the exact token ids the encoder sees),
so a change of model, tokenizer, normalisation or truncation rule can never serve a stale vector.
One ``.npz`` per encoder hash holds every vector computed so far, under the user's cache folder
(``$XDG_CACHE_HOME/adaptive-proxy/embeddings`` or ``~/.cache/adaptive-proxy/embeddings``).
Vectors are computed one row per encoder call (:mod:`predictor_onnx.rows`), exactly as the
serving runtime computes them.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from predictor_onnx.manifest import sha256_file
from predictor_onnx.rows import embed_rows
from predictor_onnx.text import PromptEncoder

#: Part of every cache key and file name: vectors of the old padded-batch scheme never match.
_CACHE_SCHEME = b"rows-v1"
#: Rows embedded between two saves of the cache file (an interrupted run keeps its work).
_SAVE_EVERY = 2048


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/adaptive-proxy/embeddings``, else ``~/.cache/adaptive-proxy/...``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "adaptive-proxy" / "embeddings"


class OnnxEncoder:
    """An onnxruntime session over the encoder graph plus its prompt encoder.

    ``threads`` rows are embedded concurrently, each call on one intra-op thread (the serving
    runtime's session options, so vectors match the served ones).
    """

    def __init__(
        self, encoder_path: Path, tokenizer_path: Path, *, max_tokens: int = 256, threads: int = 1
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from predictor_onnx.runtime import session_options

        self.path = encoder_path
        self.session = ort.InferenceSession(
            str(encoder_path), session_options(1), providers=["CPUExecutionProvider"]
        )
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.prompts = PromptEncoder(tokenizer, max_tokens=max_tokens)
        self._threads = max(threads, 1)

    def embed_ids(self, rows: Sequence[Sequence[int]]) -> Any:
        """Embeddings of already-encoded rows, each computed alone."""
        if self._threads == 1:
            return embed_rows(self.session, rows)
        with concurrent.futures.ThreadPoolExecutor(self._threads) as pool:
            return embed_rows(self.session, rows, pool=pool)

    def embed(self, batch: Sequence[Sequence[Any]]) -> Any:
        """Embeddings ``(len(batch), 384)`` of ``messages`` lists."""
        return self.embed_ids(self.prompts.ids_many(batch))


def embed_messages(
    encoder: OnnxEncoder,
    conversations: Sequence[Sequence[Any]],
    *,
    cache_dir: Path | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> Any:
    """Embeddings of many conversations, computing only those missing from the cache."""
    from tqdm import tqdm

    cache_dir = cache_dir or default_cache_dir()
    model_hash = sha256_file(encoder.path)
    rows = encoder.prompts.ids_many(conversations)
    salt = model_hash.encode() + _CACHE_SCHEME
    keys = [
        hashlib.sha256(salt + np.asarray(r, dtype=np.int32).tobytes()).hexdigest() for r in rows
    ]
    cache_file = cache_dir / f"{model_hash[:16]}-{_CACHE_SCHEME.decode()}.npz"
    known: dict[str, Any] = {}
    if cache_file.exists():
        with np.load(cache_file) as data:
            known = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
    todo = sorted(
        {k: i for i, k in enumerate(keys) if k not in known}.values(), key=lambda i: len(rows[i])
    )
    if todo:
        bar = tqdm(total=len(todo), desc="embedding prompts", unit="prompt", disable=not progress)
        since_save = 0
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            vectors = encoder.embed_ids([rows[i] for i in chunk])
            for i, vec in zip(chunk, vectors, strict=True):
                known[keys[i]] = vec
            bar.update(len(chunk))
            since_save += len(chunk)
            if since_save >= _SAVE_EVERY:
                _save(cache_file, known)
                since_save = 0
        bar.close()
        _save(cache_file, known)
    return np.stack([known[k] for k in keys]).astype(np.float32)


def _save(cache_file: Path, known: dict[str, Any]) -> None:
    """Write the cache atomically (a crash leaves the previous file)."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_file.parent, suffix=".npz")
    os.close(fd)
    all_keys = list(known)
    np.savez(tmp, keys=np.asarray(all_keys), vectors=np.stack([known[k] for k in all_keys]))
    os.replace(tmp, cache_file)
