"""Experiment: fine-tune the MiniLM encoder end to end instead of freezing it.

The frozen pipeline embeds prompts once with the int8 ONNX encoder and trains small heads on the
embeddings. Here the whole encoder (mean pooling, as the frozen one) is trained together with one
logit per arm, by a masked BCE on the arms each record observes (soft targets for MT-Bench's
graded rewards). Text and truncation are the frozen pipeline's (:class:`~predictor_onnx.text.
PromptEncoder`, 256 tokens), and the splits are *its* splits: :func:`predictor_onnx.evaluate.
_splits` is called on the same records, seed and fold count, so every out-of-fold prediction is
made by a model trained on exactly the rows the frozen head of that split was trained on. With
``cv_pool="all"`` (the frozen default) fold k of dataset D trains on D's other folds plus every
record of the other datasets, so there is no cheaper exact mirror than one training per split:
15 for ``cv`` (3 datasets × 5 folds) and 3 for ``lodo``.

MMLU holds ~14k of ~15.5k records, so each epoch subsamples every dataset to at most
``cap_per_epoch`` rows (a fresh draw per epoch) and weights rows like the frozen
:func:`~predictor_onnx.evaluate.balanced_weights` (∝ sqrt(largest / own count)).

An experiment, not part of the shipped packages: it needs the ``experiments`` extra (torch and
transformers), imports them inside functions, and nothing here is imported at serving time. Run
``python -m experiments.finetune.run --help``; the H200 run's log and metrics are beside this file.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from predictor_onnx.evaluate import Scheme, _splits, build_design, format_table, metric_rows
from predictor_onnx.schema import DEFAULT_ARMS, DEFAULT_GAINS, named_outputs
from recorded_data import resolve_data_dir
from recorded_data.records import load_records

if TYPE_CHECKING:
    from predictor_onnx.evaluate import Design
    from recorded_data.records import Record

Log = Callable[[str], None]


@dataclass(frozen=True)
class FinetuneConfig:
    """Optimisation settings of one fine-tuning run (the same for every split)."""

    epochs: int = 3
    batch_size: int = 64
    lr_encoder: float = 3e-5
    lr_head: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.06
    max_tokens: int = 256
    cap_per_epoch: int = 2000  # rows drawn per dataset and epoch (MMLU is the one capped)
    n_folds: int = 5
    seed: int = 0  # the frozen pipeline's fold seed (evaluate.oof_from_design default)
    device: str = "cpu"
    max_steps: int | None = None  # stop each training early (tests only)


def encode_records(
    records: Sequence[Record], tokenizer_path: Path, max_tokens: int
) -> list[list[int]]:
    """Token ids of every record, by the frozen pipeline's text and truncation rule."""
    from tokenizers import Tokenizer

    from predictor_onnx.text import PromptEncoder

    encoder = PromptEncoder(Tokenizer.from_file(str(tokenizer_path)), max_tokens=max_tokens)
    return encoder.ids_many([r.messages for r in records])


def load_encoder(model_dir: Path) -> Any:
    """The HF encoder of ``model_dir`` in fp32 (the shipped copy may be stored as fp16)."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(model_dir)).float()


def _pad(rows: Sequence[Sequence[int]], device: str) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)


def _forward(encoder: Any, head: Any, ids: Any, mask: Any) -> Any:
    hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    return head(pooled).float()


def _epoch_rows(
    train_idx: Any, datasets: Any, cap: int, rng: np.random.Generator
) -> tuple[Any, Any]:
    """One epoch's rows (each dataset capped at ``cap``) and their balancing weights."""
    rows: list[Any] = []
    for name in sorted(set(datasets[train_idx].tolist())):
        own = train_idx[datasets[train_idx] == name]
        rows.append(rng.choice(own, size=cap, replace=False) if len(own) > cap else own)
    picked = np.concatenate(rows)
    names, counts = np.unique(datasets[picked], return_counts=True)
    weight = np.ones(len(picked), dtype=np.float32)
    for name, count in zip(names, counts, strict=True):
        weight[datasets[picked] == name] = np.sqrt(counts.max() / count)
    return picked, weight / weight.mean()


_CHUNK_BATCHES = 32  # length-sorting window, in batches


def _n_batches(n_rows: int, batch_size: int) -> int:
    """How many batches :func:`_batches` makes of ``n_rows`` rows."""
    chunk = batch_size * _CHUNK_BATCHES
    return sum(
        math.ceil(min(chunk, n_rows - start) / batch_size) for start in range(0, n_rows, chunk)
    )


def _batches(rows: Any, lengths: Any, batch_size: int, rng: np.random.Generator) -> list[Any]:
    """Shuffled batches of similar length (less padding), themselves in random order."""
    order = rng.permutation(rows)
    chunk = batch_size * _CHUNK_BATCHES
    batches: list[Any] = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def train_split(
    template: Any,
    ids: Sequence[Sequence[int]],
    design: Design,
    train_idx: Any,
    cfg: FinetuneConfig,
    log: Log = print,
) -> tuple[Any, Any, list[float]]:
    """Fine-tune a copy of ``template`` (the encoder) + a new head on ``train_idx``.

    Returns the trained encoder, the head, and the mean loss of every epoch.
    """
    import copy

    import torch

    device = cfg.device
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    encoder = copy.deepcopy(template).to(device).train()
    head = torch.nn.Linear(encoder.config.hidden_size, len(design.arms)).to(device)
    y_all = torch.as_tensor(design.y)
    m_all = torch.as_tensor(design.mask)
    # Start each arm at its training base rate: the encoder then only learns the differences.
    seen = m_all[train_idx].sum(0).clamp(min=1.0)
    rate = ((y_all[train_idx] * m_all[train_idx]).sum(0) / seen).clamp(0.02, 0.98)
    with torch.no_grad():
        head.weight.mul_(0.1)
        head.bias.copy_(torch.log(rate / (1 - rate)))
    named = list(encoder.named_parameters())
    decay = [p for n, p in named if p.ndim > 1 and "LayerNorm" not in n]
    no_decay = [p for n, p in named if not (p.ndim > 1 and "LayerNorm" not in n)]
    optimiser = torch.optim.AdamW(
        [
            {"params": decay, "lr": cfg.lr_encoder, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "lr": cfg.lr_encoder, "weight_decay": 0.0},
            {"params": list(head.parameters()), "lr": cfg.lr_head, "weight_decay": 0.0},
        ]
    )
    datasets = np.asarray(design.datasets)
    lengths = np.asarray([len(r) for r in ids])
    per_epoch = sum(
        min(int((datasets[train_idx] == d).sum()), cfg.cap_per_epoch)
        for d in set(datasets[train_idx].tolist())
    )
    total = max(1, cfg.epochs * _n_batches(per_epoch, cfg.batch_size))
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    warmup = max(1, int(cfg.warmup_frac * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / (total - warmup + 1)))
    )
    amp = device.startswith("cuda")
    losses: list[float] = []
    step = 0
    for epoch in range(cfg.epochs):
        rows, weight = _epoch_rows(train_idx, datasets, cfg.cap_per_epoch, rng)
        weight_of = dict(zip(rows.tolist(), weight.tolist(), strict=True))
        epoch_loss: list[float] = []
        for batch in _batches(rows, lengths, cfg.batch_size, rng):
            if step >= total:
                break
            tok, att = _pad([ids[i] for i in batch], device)
            rows_t = torch.as_tensor(batch)
            y = y_all[rows_t].to(device)
            m = m_all[rows_t].to(device) * torch.tensor(
                [weight_of[i] for i in batch.tolist()], device=device
            ).unsqueeze(1)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                logits = _forward(encoder, head, tok, att)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
            loss = (bce * m).sum() / m.sum().clamp(min=1e-6)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(
                [*encoder.parameters(), *head.parameters()], max_norm=1.0
            )
            optimiser.step()
            scheduler.step()
            step += 1
            epoch_loss.append(float(loss.detach()))
        mean = float(np.mean(epoch_loss)) if epoch_loss else float("nan")
        losses.append(mean)
        log(f"    epoch {epoch + 1}/{cfg.epochs}: {len(epoch_loss)} steps, loss {mean:.4f}")
    return encoder, head, losses


def predict_rows(
    encoder: Any, head: Any, ids: Sequence[Sequence[int]], rows: Any, cfg: FinetuneConfig
) -> Any:
    """Sigmoid probabilities ``(len(rows), n_arms)`` in the order of ``rows``."""
    import torch

    encoder.eval()
    lengths = np.asarray([len(ids[i]) for i in rows])
    order = np.argsort(lengths, kind="stable")
    out = np.zeros((len(rows), head.out_features), dtype=np.float32)
    amp = cfg.device.startswith("cuda")
    with torch.inference_mode():
        for start in range(0, len(order), 256):
            pos = order[start : start + 256]
            tok, att = _pad([ids[rows[p]] for p in pos], cfg.device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                logits = _forward(encoder, head, tok, att)
            out[pos] = torch.sigmoid(logits).cpu().numpy()
    return out


def run_scheme(
    records: Sequence[Record],
    ids: Sequence[Sequence[int]],
    scheme: Scheme,
    model_dir: Path,
    cfg: FinetuneConfig,
    log: Log = print,
) -> tuple[dict[str, dict[str, float]], list[dict[str, Any]]]:
    """Out-of-fold predictions of ``scheme`` (the frozen pipeline's splits) and per-split info."""
    empty = np.zeros((len(records), 0), dtype=np.float32)
    design = build_design(records, empty, empty, DEFAULT_ARMS)
    template = load_encoder(model_dir)
    predictions: dict[str, dict[str, float]] = {}
    info: list[dict[str, Any]] = []
    splits = _splits(design, scheme, cfg.n_folds, cfg.seed, "all")
    for n, (label, train, test) in enumerate(splits, start=1):
        started = time.perf_counter()
        train_idx, test_idx = np.nonzero(train)[0], np.nonzero(test)[0]
        log(
            f"[{scheme}] split {n}/{len(splits)} {label}: train {len(train_idx)}, "
            f"test {len(test_idx)}"
        )
        encoder, head, losses = train_split(template, ids, design, train_idx, cfg, log)
        probs = predict_rows(encoder, head, ids, test_idx, cfg)
        # Arms no training row observes are left out, as the frozen pipeline does.
        seen = design.mask[train_idx].sum(axis=0) > 0
        arms = [a for a, s in zip(design.arms, seen, strict=True) if s]
        rows = named_outputs(probs[:, seen], arms, DEFAULT_GAINS)
        for i, row in zip(test_idx, rows, strict=True):
            predictions[design.prompt_ids[i]] = row
        seconds = time.perf_counter() - started
        info.append(
            {
                "split": label,
                "n_train": len(train_idx),
                "n_test": len(test_idx),
                "epoch_loss": losses,
                "seconds": round(seconds, 2),
            }
        )
        log(f"    done in {seconds:.1f} s")
        del encoder, head
    return predictions, info


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def subsample(records: Sequence[Record], max_records: int, seed: int) -> list[Record]:
    """About ``max_records`` records, the same share from every dataset (toy runs)."""
    names = sorted({r.dataset for r in records})
    per = max(1, max_records // len(names))
    rng = np.random.default_rng(seed)
    keep: set[int] = set()
    for name in names:
        idx = [i for i, r in enumerate(records) if r.dataset == name]
        keep.update(int(i) for i in rng.permutation(idx)[:per])
    return [r for i, r in enumerate(records) if i in keep]


def run_experiment(
    data_dir: Path,
    model_dir: Path,
    out_dir: Path,
    schemes: Sequence[Scheme],
    cfg: FinetuneConfig,
    *,
    max_records: int | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Every scheme's out-of-fold predictions and metrics, written under ``out_dir``."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    records = load_records(data_dir)
    if max_records is not None:
        records = subsample(records, max_records, cfg.seed)
    ids = encode_records(records, model_dir / "tokenizer.json", cfg.max_tokens)
    log(
        f"{len(records)} records tokenised in {time.perf_counter() - started:.1f} s; "
        f"config {asdict(cfg)}"
    )
    result: dict[str, Any] = {"config": asdict(cfg), "n_records": len(records), "schemes": {}}
    for scheme in schemes:
        t0 = time.perf_counter()
        predictions, info = run_scheme(records, ids, scheme, model_dir, cfg, log)
        with (out_dir / f"oof_{scheme}.jsonl").open("w", encoding="utf-8") as fh:
            for rec in records:
                if rec.prompt_id in predictions:
                    row = {
                        "prompt_id": rec.prompt_id,
                        "dataset": rec.dataset,
                        **predictions[rec.prompt_id],
                    }
                    fh.write(json.dumps(_clean(row)) + "\n")
        rows = metric_rows(records, predictions, DEFAULT_ARMS, DEFAULT_GAINS)
        title = "fine-tuned encoder, " + (
            "5-fold grouped CV" if scheme == "cv" else "leave-one-dataset-out"
        )
        table = format_table(rows, title)
        log(table)
        result["schemes"][scheme] = {
            "rows": rows,
            "splits": info,
            "table": table,
            "train_s": round(time.perf_counter() - t0, 2),
        }
        result["total_s"] = round(time.perf_counter() - started, 2)
        # Written after every scheme so a run cut short still returns what it finished.
        (out_dir / "metrics.json").write_text(json.dumps(_clean(result), indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m experiments.finetune.run --data-dir DIR --model-dir DIR --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m experiments.finetune.run",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="recorded data (default: $ADAPTIVE_DATA_DIR, else the bundled copy)",
    )
    parser.add_argument(
        "--model-dir",
        required=True,
        help="HF MiniLM folder (config.json, tokenizer.json, model.safetensors)",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--cap-per-epoch", type=int, default=2000, help="rows drawn per dataset and epoch"
    )
    parser.add_argument("--schemes", nargs="+", choices=("cv", "lodo"), default=["cv", "lodo"])
    parser.add_argument("--max-records", type=int, default=None)
    parser.add_argument("--max-steps", type=int, default=None, help="per training (smoke runs)")
    args = parser.parse_args(argv)
    cfg = FinetuneConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        cap_per_epoch=args.cap_per_epoch,
        device=args.device,
        max_steps=args.max_steps,
    )
    if cfg.device.startswith("cuda"):
        import torch

        torch.backends.cuda.matmul.allow_tf32 = True
    data_dir = resolve_data_dir(args.data_dir)
    run_experiment(
        data_dir,
        Path(args.model_dir),
        Path(args.out),
        args.schemes,
        cfg,
        max_records=args.max_records,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
