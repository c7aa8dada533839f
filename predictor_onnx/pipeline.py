"""One command from records to a shipped predictor folder: export, embed, train, evaluate, card.

``build_predictor`` writes into ``out_dir``: ``encoder.int8.onnx`` (validated export),
``head.onnx`` (parity-checked against the numpy head), ``tokenizer.json``, ``manifest.json``
(sha256 of each file, arms, outputs, max tokens) and ``MODEL_CARD.md`` (data, splits, metrics,
hashes, speed if measured).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from predictor_onnx.build_result import BuildResult
from predictor_onnx.card import write_model_card
from predictor_onnx.embed import OnnxEncoder, embed_messages
from predictor_onnx.evaluate import (
    Scheme,
    balanced_weights,
    build_design,
    format_table,
    metric_rows,
    oof_from_design,
)
from predictor_onnx.features import FEATURE_NAMES, feature_matrix
from predictor_onnx.heads import HeadConfig, head_to_onnx, onnx_parity, train_head
from predictor_onnx.manifest import write_manifest
from predictor_onnx.schema import output_names

if TYPE_CHECKING:
    from predictor_onnx.export import EncoderExport
    from recorded_data.records import Record

VERSION = "2.0.0"
HEAD_PARITY_TOLERANCE = 1e-5
#: The configuration that won on held-out data (see MODEL_CARD.md); also used out-of-fold.
DEFAULT_HEAD = HeadConfig(
    kind="linear", l2=1e-3, linear_features=(0,), balance_datasets=False, cv_pool="dataset"
)


def ensure_encoder(
    work_dir: Path, records: Sequence[Record], *, progress: bool, force: bool = False
) -> EncoderExport:
    """Export + validate the encoder into ``work_dir`` (validation on up to 600 real prompts).

    A previous export in ``work_dir`` whose report (``export_report.json``) matches the int8
    file's sha256 is reused unless ``force``; the export is deterministic, so this only saves time.
    """
    import json
    import random

    from predictor_onnx.export import EncoderExport, export_encoder
    from predictor_onnx.manifest import sha256_file
    from predictor_onnx.text import conversation_text

    report_path = work_dir / "export_report.json"
    if not force and report_path.is_file():
        report = json.loads(report_path.read_text())
        int8 = Path(report["int8_path"])
        if int8.is_file() and sha256_file(int8) == report.get("int8_sha256"):
            if progress:
                print(f"reusing the validated encoder export in {work_dir} (--reexport to redo)")
            return EncoderExport(
                fp32_path=Path(report["fp32_path"]),
                int8_path=int8,
                tokenizer_path=Path(report["tokenizer_path"]),
                fp32_max_abs_diff=float(report["fp32_max_abs_diff"]),
                int8_min_cosine=float(report["int8_min_cosine"]),
                int8_mean_cosine=float(report["int8_mean_cosine"]),
                n_validation_texts=int(report["n_validation_texts"]),
            )
    sample = list(records)
    random.Random(0).shuffle(sample)
    by_dataset: dict[str, list[Record]] = {}
    for rec in sample:
        by_dataset.setdefault(rec.dataset, []).append(rec)
    per = max(600 // max(len(by_dataset), 1), 1)
    texts = [conversation_text(r.messages) for recs in by_dataset.values() for r in recs[:per]]
    if progress:
        print(f"exporting encoder to ONNX and validating on {len(texts)} real prompts…")
    result = export_encoder(work_dir, texts)
    report = {k: (str(v) if isinstance(v, Path) else v) for k, v in result.__dict__.items()}
    report["int8_sha256"] = sha256_file(result.int8_path)
    report_path.write_text(json.dumps(report, indent=2))
    return result


def measure_speed_in_subprocess(model_dir: Path, conversations: Sequence[Any]) -> dict[str, Any]:
    """``python -m bench.latency.predictor_speed`` in a fresh process, so RSS is the serving
    figure."""
    import json
    import random
    import subprocess
    import sys
    import tempfile

    sample = [list(m) for m in conversations]
    random.Random(0).shuffle(sample)
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.jsonl"
        prompts.write_text("".join(json.dumps(m) + "\n" for m in sample[:1024]))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.latency.predictor_speed",
                "--model",
                str(model_dir),
                "--prompts",
                str(prompts),
                "--json",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


def reuse_encoder(model_dir: Path) -> EncoderExport:
    """The already validated int8 encoder of an existing model folder (no torch needed)."""
    from predictor_onnx.export import EncoderExport
    from predictor_onnx.manifest import read_manifest

    manifest = read_manifest(model_dir)
    report = manifest.raw.get("encoder_validation", {})
    return EncoderExport(
        fp32_path=Path(report.get("fp32_path", "")),
        int8_path=manifest.path(manifest.encoder),
        tokenizer_path=manifest.path(manifest.tokenizer),
        fp32_max_abs_diff=float(report.get("fp32_max_abs_diff", float("nan"))),
        int8_min_cosine=float(report.get("int8_min_cosine", float("nan"))),
        int8_mean_cosine=float(report.get("int8_mean_cosine", float("nan"))),
        n_validation_texts=int(report.get("n_validation_texts", 0)),
    )


def build_predictor(
    records: Sequence[Record],
    out_dir: Path,
    *,
    encoder: EncoderExport,
    arms: Sequence[str],
    gains: dict[str, tuple[str, str]],
    cfg: HeadConfig = DEFAULT_HEAD,
    schemes: Sequence[Scheme] = ("cv", "lodo"),
    embed_cache_dir: Path | None = None,
    data_note: str = "",
    progress: bool = True,
    measure_speed: bool = False,
    max_tokens: int = 256,
) -> BuildResult:
    """Train the head on every record, write the folder, evaluate out-of-fold, write the card."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for source, name in (
        (encoder.int8_path, "encoder.int8.onnx"),
        (encoder.tokenizer_path, "tokenizer.json"),
    ):
        if source.resolve() != (out_dir / name).resolve():
            shutil.copyfile(source, out_dir / name)
    onnx_encoder = OnnxEncoder(
        out_dir / "encoder.int8.onnx", out_dir / "tokenizer.json", max_tokens=max_tokens, threads=2
    )
    conversations = [r.messages for r in records]
    embeddings = embed_messages(
        onnx_encoder, conversations, cache_dir=embed_cache_dir, progress=progress
    )
    design = build_design(records, embeddings, feature_matrix(conversations), arms)
    weights = (
        balanced_weights(design, slice(None))
        if cfg.balance_datasets
        else np.ones(len(design.x), dtype=np.float32)
    )
    started = time.perf_counter()
    head = train_head(
        design.x,
        design.y,
        design.mask * weights[:, None],
        tuple(arms),
        n_embed=design.n_embed,
        cfg=cfg,
    )
    train_s = time.perf_counter() - started
    head_to_onnx(head, out_dir / "head.onnx", n_embed=design.n_embed)
    parity = onnx_parity(head, out_dir / "head.onnx", design.x[:512], n_embed=design.n_embed)
    if parity > HEAD_PARITY_TOLERANCE:
        raise RuntimeError(f"head.onnx differs from the trained head by {parity:.2e}")
    write_manifest(
        out_dir,
        {
            "version": VERSION,
            "encoder": "encoder.int8.onnx",
            "head": "head.onnx",
            "tokenizer": "tokenizer.json",
            "max_tokens": onnx_encoder.prompts.max_tokens,
            "embedding_dim": design.n_embed,
            "arms": list(arms),
            "gains": {k: list(v) for k, v in gains.items()},
            "output_names": list(output_names(arms, gains)),
            "feature_names": list(FEATURE_NAMES),
            "head_config": cfg.__dict__,
            "encoder_validation": {
                "fp32_max_abs_diff": encoder.fp32_max_abs_diff,
                "int8_min_cosine": encoder.int8_min_cosine,
                "int8_mean_cosine": encoder.int8_mean_cosine,
                "n_validation_texts": encoder.n_validation_texts,
            },
        },
    )
    result = BuildResult(out_dir=out_dir, head_parity=parity)
    n_datasets = len(set(design.datasets))
    for scheme in schemes:
        if scheme == "lodo" and n_datasets < 2:
            continue
        predictions = oof_from_design(
            design,
            scheme=scheme,
            gains=gains,
            cfg=cfg,
            cv_pool=cfg.cv_pool,
            sample_weight=balanced_weights if cfg.balance_datasets else None,
            progress=progress,
        )
        rows = metric_rows(records, predictions, arms, gains)
        title = "5-fold grouped cross-validation" if scheme == "cv" else "leave-one-dataset-out"
        result.rows[scheme] = rows
        result.tables[scheme] = format_table(rows, title)
    if "lodo" in schemes and n_datasets >= 2:
        from predictor_onnx.methods import headline, per_arm
        from predictor_onnx.transfer import transfer_table

        transfer = headline(design, per_arm(cfg), progress=progress)
        for scheme in ("lodo", "cv"):
            if any(by_scheme.get(scheme) for by_scheme in transfer.values()):
                result.tables[f"transfer_{scheme}"] = transfer_table(transfer, scheme)

    speed = measure_speed_in_subprocess(out_dir, conversations) if measure_speed else None
    write_model_card(
        out_dir,
        records=records,
        encoder=encoder,
        result=result,
        cfg=cfg,
        train_s=train_s,
        data_note=data_note,
        speed=speed,
    )
    return result
