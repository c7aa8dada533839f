"""``adaptive-proxy predictor train|export|eval|predict``.

* ``train``: export + validate the encoder, embed, train the head, evaluate out-of-fold, write
  the model folder with its card. ``--data-dir`` trains on the recorded benchmark data (the shipped
  model); ``--jsonl FILE`` trains your own predictor from your own outcomes (format in
  ``predictor_onnx/custom.py``) and prints the YAML that serves it.
* ``export``: only the encoder export and its numerical validation.
* ``eval``: out-of-fold metrics (CV and leave-one-dataset-out) of a model folder's method.
* ``predict``: JSONL of ``{"messages": [...]}`` (or bare lists) in, JSONL of predictions out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from predictor_onnx.escalation_cli import add_escalation_args

if TYPE_CHECKING:
    from recorded_data.records import Record

WORK_DIR = Path(__file__).resolve().parent / "work"
MODEL_DIR = Path(__file__).resolve().parent / "model"
#: Encoder input budget of the shipped model (chosen on held-out APGR and speed: MODEL_CARD.md).
MAX_TOKENS = 128
DATA_NOTE = (
    "RouteLLM evaluation outcomes (lm-sys/RouteLLM @0b64fdaf, `routellm/evals/`): GSM8K, MMLU "
    "(57 subjects) and MT-Bench (both turns; GPT-4 judge score, normalised (s−1)/9) of weak = "
    "Mixtral-8x7B-Instruct and strong = gpt-4-1106-preview; the four GSM8K decoding procedures of "
    "openai/grade-school-math @3101c7d5 (6B/175B × one sample / best-of-100 with a verifier); "
    "the multi-sample suites (HumanEval × CodeGen-16B from microsoft/CodeT @35f54d60, arm "
    "`codegen16b`; Game of 24 × GPT-4 from princeton-nlp/tree-of-thought-llm @ab400345, standard "
    "and CoT prompts, arm `gpt4_game24`), each labelled with the prompt's empirical success rate "
    "over 100 samples; and the AlpacaEval ladder (tatsu-lab/alpaca_eval @cd543a14: 805 "
    "instructions × 15 models, reward = GPT-4 judge's win over text-davinci-003, one arm per "
    "model; the 55 judgements recorded as -1 are left unobserved). Contaminated prompts listed "
    "by RouteLLM are dropped. Loaded by `recorded_data/records.py` and "
    "`recorded_data/every_dataset.py` from `--data-dir`, else the copy bundled in "
    "`recorded_data/`."
)


def _records(args: argparse.Namespace) -> tuple[list[Record], tuple[str, ...], dict[str, Any]]:
    from predictor_onnx.custom import load_jsonl_records, parse_gains
    from predictor_onnx.schema import ALL_ARMS, DEFAULT_GAINS

    if getattr(args, "jsonl", None):
        records, arms = load_jsonl_records(Path(args.jsonl))
        return records, arms, parse_gains(args.gain or [], arms)
    from recorded_data import resolve_data_dir
    from recorded_data.every_dataset import load_every_dataset

    records = load_every_dataset(resolve_data_dir(args.data_dir))
    return records, ALL_ARMS, dict(DEFAULT_GAINS)


def _head_config(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from predictor_onnx.pipeline import DEFAULT_HEAD

    cfg = DEFAULT_HEAD
    if getattr(args, "head", None):
        cfg = replace(cfg, kind=args.head)
    return cfg


def cmd_export(args: argparse.Namespace) -> int:
    """Export and validate the encoder into the work folder."""
    from predictor_onnx.pipeline import ensure_encoder

    records, _, _ = _records(args)
    result = ensure_encoder(Path(args.work_dir), records, progress=True, force=True)
    print(
        f"fp32: {result.fp32_path} (max |Δ| vs sentence-transformers "
        f"{result.fp32_max_abs_diff:.2e})"
    )
    print(
        f"int8: {result.int8_path} (cosine to fp32 min {result.int8_min_cosine:.4f}, "
        f"mean {result.int8_mean_cosine:.4f})"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """The one command: export, embed, train, export the head, evaluate, write the card."""
    if getattr(args, "escalation", False):
        from predictor_onnx.escalation_cli import cmd_train_escalation

        return cmd_train_escalation(args)
    from predictor_onnx.pipeline import build_predictor, ensure_encoder, reuse_encoder

    records, arms, gains = _records(args)
    out_dir = (
        Path(args.out) if args.out else (MODEL_DIR if not args.jsonl else Path("predictor_model"))
    )
    # Your own predictor reuses the shipped, validated int8 encoder (no torch needed) unless
    # --export-encoder asks for a fresh export; the shipped model is always re-exported.
    if args.jsonl and not args.export_encoder:
        encoder = reuse_encoder(Path(args.encoder_from))
    else:
        encoder = ensure_encoder(Path(args.work_dir), records, progress=True, force=args.reexport)
    result = build_predictor(
        records,
        out_dir,
        encoder=encoder,
        arms=arms,
        gains=gains,
        cfg=_head_config(args),
        schemes=() if args.skip_eval else ("cv", "lodo"),
        embed_cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        data_note="" if args.jsonl else DATA_NOTE,
        measure_speed=args.measure_speed,
        max_tokens=args.max_tokens,
    )
    for table in result.tables.values():
        print(table + "\n")
    print(f"predictor written to {out_dir.resolve()} (card: {out_dir / 'MODEL_CARD.md'})")
    print("serve it by adding to your policy YAML:\n")
    print(f"predictor:\n  type: onnx\n  path: {out_dir.resolve()}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Out-of-fold metrics of a model folder's method (its encoder, its head configuration)."""
    from dataclasses import replace

    from predictor_onnx.embed import OnnxEncoder, embed_messages
    from predictor_onnx.evaluate import (
        Scheme,
        balanced_weights,
        build_design,
        format_table,
        metric_rows,
        oof_from_design,
    )
    from predictor_onnx.features import feature_matrix
    from predictor_onnx.heads import HeadConfig
    from predictor_onnx.manifest import read_manifest

    records, arms, gains = _records(args)
    manifest = read_manifest(Path(args.model))
    cfg = replace(HeadConfig(), **manifest.raw.get("head_config", {}))
    if args.head:
        cfg = replace(cfg, kind=args.head)
    encoder = OnnxEncoder(
        manifest.path(manifest.encoder),
        manifest.path(manifest.tokenizer),
        max_tokens=manifest.max_tokens,
        threads=args.threads,
    )
    conversations = [r.messages for r in records]
    embeddings = embed_messages(
        encoder, conversations, cache_dir=Path(args.cache_dir) if args.cache_dir else None
    )
    design = build_design(records, embeddings, feature_matrix(conversations), arms)
    schemes: tuple[Scheme, ...] = ("cv", "lodo") if args.scheme == "both" else (args.scheme,)
    transfer: dict[str, Any] = {}
    if "lodo" in schemes and len(set(design.datasets)) >= 2:
        from predictor_onnx.methods import headline, per_arm
        from predictor_onnx.transfer import TRANSFER_HEADER, transfer_table

        transfer = headline(design, per_arm(cfg))
    if "lodo" in schemes and any(by.get("lodo") for by in transfer.values()):
        print(TRANSFER_HEADER + "\n")
        print("**leave-one-dataset-out (headline)**\n\n" + transfer_table(transfer, "lodo") + "\n")
        print("**in-dataset 5-fold CV**\n\n" + transfer_table(transfer, "cv") + "\n")
    for scheme in schemes:
        if scheme == "lodo" and len(set(design.datasets)) < 2:
            print("leave-one-dataset-out needs at least two datasets; skipped")
            continue
        predictions = oof_from_design(
            design,
            scheme=scheme,
            gains=gains,
            cfg=cfg,
            cv_pool=cfg.cv_pool,
            sample_weight=balanced_weights if cfg.balance_datasets else None,
        )
        title = "5-fold grouped CV" if scheme == "cv" else "leave-one-dataset-out"
        print(format_table(metric_rows(records, predictions, arms, gains), title) + "\n")
    return 0


class BadInputLine(ValueError):
    """A line of the ``predict`` input that is not a conversation; the message names the line."""


def _read_conversations(stream: TextIO) -> list[tuple[Any, Any]]:
    rows: list[tuple[Any, Any]] = []
    for lineno, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInputLine(f"line {lineno}: not JSON ({exc.msg}, column {exc.colno})") from None
        if isinstance(obj, list):
            row_id, messages = None, obj
        elif isinstance(obj, dict) and isinstance(obj.get("messages"), list):
            row_id, messages = obj.get("id"), obj["messages"]
        else:
            raise BadInputLine(f'line {lineno}: expected {{"messages": [...]}} or a list')
        if not messages:
            raise BadInputLine(f"line {lineno}: `messages` is empty (give at least one message)")
        if not all(isinstance(m, dict) for m in messages):
            raise BadInputLine(f"line {lineno}: every message must be an object with `content`")
        rows.append((row_id, messages))
    return rows


def cmd_predict(args: argparse.Namespace) -> int:
    """JSONL of conversations in, JSONL of ``{"id"?, "predictions": {...}}`` out."""
    from tqdm import tqdm

    from predictor_onnx.runtime import OnnxPredictor

    predictor = OnnxPredictor.load(
        Path(args.model) if args.model else None,
        max_batch_size=args.batch_size,
        threads=args.threads,
    )
    source = sys.stdin if args.input == "-" else Path(args.input).open(encoding="utf-8")
    with source:
        try:
            rows = _read_conversations(source)
        except BadInputLine as exc:
            name = "<stdin>" if args.input == "-" else args.input
            print(f"predict: {name}: {exc}", file=sys.stderr)
            return 2
    sink = sys.stdout if args.output == "-" else Path(args.output).open("w", encoding="utf-8")
    try:
        bar = tqdm(total=len(rows), desc="predicting", unit="prompt", disable=args.output == "-")
        for start in range(0, len(rows), args.batch_size):
            chunk = rows[start : start + args.batch_size]
            for (row_id, _), pred in zip(
                chunk, predictor.predict_sync([m for _, m in chunk]), strict=True
            ):
                out: dict[str, Any] = {"predictions": pred}
                if row_id is not None:
                    out = {"id": row_id, **out}
                sink.write(json.dumps(out) + "\n")
            bar.update(len(chunk))
        bar.close()
    finally:
        if sink is not sys.stdout:
            sink.close()
    return 0


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help="recorded data (default: $ADAPTIVE_DATA_DIR, else the bundled copy)",
    )
    parser.add_argument(
        "--jsonl", default=None, help="your own JSONL of messages + rewards per arm (see docs)"
    )
    parser.add_argument(
        "--gain",
        action="append",
        default=None,
        metavar="NAME=HI-LO",
        help="derived gain for --jsonl data (repeatable)",
    )
    parser.add_argument("--cache-dir", default=None, help="embedding cache folder")


def register_cli(subparsers: Any) -> None:
    """Add ``predictor train|export|eval|predict`` to the ``adaptive-proxy`` parser."""
    predictor = subparsers.add_parser(
        "predictor", help="train, export, evaluate, run the predictor"
    )
    sub = predictor.add_subparsers(dest="predictor_command", required=True)

    train = sub.add_parser("train", help="export + train + evaluate + write a model folder")
    _data_args(train)
    train.add_argument(
        "--out",
        default=None,
        help="model folder (default: the shipped one; with --escalation a new temporary folder)",
    )
    train.add_argument("--work-dir", default=str(WORK_DIR), help="fp32 export, scratch files")
    train.add_argument("--head", choices=("linear", "mlp", "ensemble"), default=None)
    train.add_argument(
        "--max-tokens",
        type=int,
        default=MAX_TOKENS,
        help=f"tokens the encoder reads per conversation (default {MAX_TOKENS})",
    )
    train.add_argument("--skip-eval", action="store_true", help="no out-of-fold evaluation")
    train.add_argument(
        "--encoder-from",
        default=str(MODEL_DIR),
        help="with --jsonl: reuse this folder's int8 encoder (default: shipped)",
    )
    train.add_argument(
        "--measure-speed",
        action="store_true",
        help="run bench.latency.predictor_speed and put its figures in the card",
    )
    train.add_argument(
        "--reexport",
        action="store_true",
        help="export the encoder even if a validated export is in --work-dir",
    )
    train.add_argument(
        "--export-encoder",
        action="store_true",
        help="with --jsonl: export the encoder afresh (needs torch)",
    )
    add_escalation_args(train)
    train.set_defaults(func=cmd_train)

    export = sub.add_parser("export", help="export the encoder to ONNX (fp32 + int8), validate")
    _data_args(export)
    export.add_argument("--work-dir", default=str(WORK_DIR))
    export.set_defaults(func=cmd_export)

    evaluate = sub.add_parser("eval", help="out-of-fold CV / leave-one-dataset-out metrics")
    _data_args(evaluate)
    evaluate.add_argument("--model", default=str(MODEL_DIR))
    evaluate.add_argument("--scheme", choices=("cv", "lodo", "both"), default="both")
    evaluate.add_argument("--head", choices=("linear", "mlp", "ensemble"), default=None)
    evaluate.add_argument("--threads", type=int, default=2)
    evaluate.set_defaults(func=cmd_eval)

    predict = sub.add_parser("predict", help="JSONL of messages in, JSONL of predictions out")
    predict.add_argument("--model", default=None, help="model folder (default: shipped)")
    predict.add_argument("--input", default="-", help="input JSONL (default: stdin)")
    predict.add_argument("--output", default="-", help="output JSONL (default: stdout)")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.add_argument("--threads", type=int, default=1)
    predict.set_defaults(func=cmd_predict)


def main(argv: list[str] | None = None) -> int:
    """Run ``predictor …`` on its own (tests, ``python -m predictor_onnx.cli``)."""
    parser = argparse.ArgumentParser(prog="adaptive-proxy")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
