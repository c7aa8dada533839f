"""``adaptive-proxy predictor train --escalation``: train and export cascade escalation models.

Trains each named cascade of :data:`predictor_onnx.escalation.CASCADES` on the recorded GSM8K
answers, prints its out-of-fold figures, and writes ``<name>.json`` plus its sha256 in the
folder's ``manifest.json``: ``--out DIR``, else a new temporary folder (printed), so the shipped
``predictor_onnx/escalation_models/`` changes only with ``--force``. The shipped models were
built with the benchmark's out-of-fold prompt predictions as the prior::

    adaptive-proxy predictor train --escalation --force \\
        --prior-jsonl bench/results/routellm-gsm8k.records.jsonl \\
        --prior-jsonl bench/results/gsm8k-procedures.records.jsonl
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from predictor_onnx.escalation_format import shipped_escalation_dir


def add_escalation_args(parser: argparse.ArgumentParser) -> None:
    """The ``--escalation`` flags of ``predictor train``."""
    parser.add_argument(
        "--escalation",
        action="store_true",
        help="train the cascade escalation models instead of the prompt predictor",
    )
    parser.add_argument(
        "--cascade",
        action="append",
        default=None,
        help="with --escalation: which cascade (repeatable; default: all shipped ones)",
    )
    parser.add_argument(
        "--prior-jsonl",
        action="append",
        default=None,
        metavar="FILE",
        help="with --escalation: out-of-fold prompt predictions ({prompt_id, predictions}); "
        "without it the models read the evidence features only",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --escalation: write into the shipped predictor_onnx/escalation_models/ "
        "(default without --out: a new temporary folder)",
    )


def escalation_out_dir(out: str | None, *, force: bool) -> Path:
    """Where ``--escalation`` writes: ``--out``, the shipped folder with ``--force``, else a new
    temporary folder. Replacing the shipped weights and hashes is never a default: ``--out``
    naming the shipped folder still needs ``--force``."""
    shipped = shipped_escalation_dir()
    if out is None:
        return shipped if force else Path(tempfile.mkdtemp(prefix="adaptive-escalation-"))
    path = Path(out)
    if path.resolve() == shipped and not force:
        raise SystemExit(
            f"error: {path} holds the shipped escalation models; add --force to replace them"
        )
    return path


def cmd_train_escalation(args: argparse.Namespace) -> int:
    """Train, evaluate out of fold, export; print where each model went."""
    from predictor_onnx.escalation import CASCADES, build_escalation, read_prior_jsonl
    from recorded_data import resolve_data_dir
    from recorded_data.records import load_gsm8k

    names = args.cascade or sorted(CASCADES)
    unknown = [n for n in names if n not in CASCADES]
    if unknown:
        raise SystemExit(f"unknown cascade {unknown[0]!r}; known: {', '.join(sorted(CASCADES))}")
    out_dir = escalation_out_dir(args.out, force=args.force)
    data_dir = resolve_data_dir(args.data_dir)
    records = load_gsm8k(data_dir)
    prior = read_prior_jsonl([Path(p) for p in args.prior_jsonl]) if args.prior_jsonl else None
    for name in names:
        path, metrics = build_escalation(records, CASCADES[name], out_dir, prior=prior)
        figures = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
        print(f"{name}: {figures}\n  written {path}")
    print(f"escalation models written to {out_dir.resolve()} (manifest: manifest.json)")
    print("serve one with `escalate: {model: <its .json path>, threshold: ...}` in the cascade")
    return 0
