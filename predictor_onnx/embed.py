"""Embedding many prompts with an ONNX encoder, cached on disk.

The cache key of a prompt is sha256(encoder file sha256 + the exact token ids the encoder sees),
so a change of model, tokenizer, normalisation or truncation rule can never serve a stale vector.
One ``.npz`` per encoder hash holds every vector computed so far.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from predictor_onnx.manifest import sha256_file
from predictor_onnx.text import PromptEncoder

DEFAULT_CACHE_DIR = Path(__file__).resolve().parent / "work" / "embed_cache"


class OnnxEncoder:
    """An onnxruntime session over the encoder graph plus its prompt encoder."""

    def __init__(
        self, encoder_path: Path, tokenizer_path: Path, *, max_tokens: int = 256, threads: int = 1
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.path = encoder_path
        self.session = ort.InferenceSession(
            str(encoder_path), opts, providers=["CPUExecutionProvider"]
        )
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.prompts = PromptEncoder(tokenizer, max_tokens=max_tokens)

    def embed_ids(self, rows: Sequence[Sequence[int]]) -> Any:
        """Embeddings of already-encoded rows (padded here to the longest)."""
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        out: Any = self.session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
        return out

    def embed(self, batch: Sequence[Sequence[Any]]) -> Any:
        """Embeddings ``(len(batch), 384)`` of ``messages`` lists."""
        ids, mask = self.prompts.batch(batch)
        out: Any = self.session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
        return out


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

    cache_dir = cache_dir or DEFAULT_CACHE_DIR
    model_hash = sha256_file(encoder.path)
    rows = encoder.prompts.ids_many(conversations)
    keys = [
        hashlib.sha256(model_hash.encode() + np.asarray(r, dtype=np.int32).tobytes()).hexdigest()
        for r in rows
    ]
    cache_file = cache_dir / f"{model_hash[:16]}.npz"
    known: dict[str, Any] = {}
    if cache_file.exists():
        with np.load(cache_file) as data:
            known = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
    todo = sorted(
        {k: i for i, k in enumerate(keys) if k not in known}.values(), key=lambda i: len(rows[i])
    )
    if todo:
        bar = tqdm(total=len(todo), desc="embedding prompts", unit="prompt", disable=not progress)
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            vectors = encoder.embed_ids([rows[i] for i in chunk])
            for i, vec in zip(chunk, vectors, strict=True):
                known[keys[i]] = vec
            bar.update(len(chunk))
        bar.close()
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".npz")
        os.close(fd)
        all_keys = list(known)
        np.savez(tmp, keys=np.asarray(all_keys), vectors=np.stack([known[k] for k in all_keys]))
        os.replace(tmp, cache_file)
    return np.stack([known[k] for k in keys]).astype(np.float32)
