"""The head: from ``[embedding | prompt features]`` to one success probability per arm.

Multi-task: one output per arm, trained jointly with a masked, soft-label binary cross-entropy
(graded rewards in [0, 1] are soft labels; an arm a record did not observe is masked out). Two
families, both plain numpy so training and out-of-fold evaluation need no torch:

* ``linear``: logistic regression per arm (L2, full-batch L-BFGS via scipy).
* ``mlp``: one ReLU hidden layer shared by all arms (Adam, mini-batches, weight decay); an
  ensemble of ``n_members`` seeds is merged into one wider layer by averaging logits, so it is
  still a single MatMul/Add/Relu/MatMul/Add/Sigmoid graph.
* ``ensemble``: the mean of the ``mlp`` logits and the logits of a ``linear`` member restricted
  to the embedding and a few generic features. The linear member joins the same hidden layer
  exactly, as ``x·w = relu(x·w) − relu(−x·w)``, so the graph keeps its shape.

Feature standardisation is part of the parameters (and of the ONNX graph).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

HeadKind = Literal["linear", "mlp", "ensemble"]
_MIN_STEPS = 400


@dataclass(frozen=True)
class HeadConfig:
    """Hyper-parameters of one head."""

    kind: HeadKind = "mlp"
    hidden: int = 128
    l2: float = 1e-3
    epochs: int = 25
    lr: float = 1e-3
    batch_size: int = 128
    n_members: int = 3
    seed: int = 0
    #: ``ensemble``: the linear member sees the embedding plus only these hand-made features
    #: (indices into the feature block); the MLP members see everything.
    linear_features: tuple[int, ...] | None = (0,)
    linear_l2: float = 1e-3
    #: ``linear`` also honours ``linear_features`` (None: every feature).
    #: Weight each training dataset ∝ sqrt(largest / own size) instead of per record.
    balance_datasets: bool = False
    #: Out-of-fold CV trains on the other folds of the same dataset ("dataset") or also on every
    #: record of the other datasets ("all").
    cv_pool: str = "dataset"


@dataclass
class HeadParams:
    """A trained head: standardisation, weights (hidden layer optional), arm names."""

    arms: tuple[str, ...]
    mean: Any
    scale: Any
    w2: Any
    b2: Any
    w1: Any = None
    b1: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    def logits(self, x: Any) -> Any:
        """Pre-sigmoid outputs for raw (unstandardised) inputs ``x``."""
        z = (np.asarray(x, dtype=np.float32) - self.mean) / self.scale
        if self.w1 is not None:
            z = np.maximum(z @ self.w1 + self.b1, 0.0)
        out: Any = z @ self.w2 + self.b2
        return out

    def predict(self, x: Any) -> Any:
        """Probabilities, shape ``(N, len(arms))``."""
        return _sigmoid(self.logits(x))


def _sigmoid(z: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))


def _standardiser(x: Any, n_embed: int) -> tuple[Any, Any]:
    # The embedding block is already L2-normalised: leave it as is (mean 0, scale 1) so the
    # head sees the geometry the encoder produced; standardise only the hand-made features.
    mean = np.zeros(x.shape[1], dtype=np.float32)
    scale = np.ones(x.shape[1], dtype=np.float32)
    feats = x[:, n_embed:]
    mean[n_embed:] = feats.mean(axis=0)
    # A feature constant in training (e.g. the turn count when every training prompt is single
    # turn) keeps scale 1: dividing by a ~0 std would blow unseen values up at prediction time.
    std = feats.std(axis=0)
    scale[n_embed:] = np.where(std > 1e-3, std, 1.0)
    return mean, scale


def _fit_linear(z: Any, y: Any, m: Any, l2: float) -> tuple[Any, Any]:
    from scipy.optimize import minimize

    d = z.shape[1]
    a = y.shape[1]
    weight_sum = m.sum(axis=0).clip(min=1.0)

    def loss(theta: Any) -> tuple[float, Any]:
        w = theta[: d * a].reshape(d, a).astype(np.float32)
        b = theta[d * a :].astype(np.float32)
        logit = z @ w + b
        p = _sigmoid(logit)
        eps = 1e-7
        ce = -(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)) * m
        value = float((ce.sum(axis=0) / weight_sum).sum() + l2 * float(np.sum(w * w)))
        grad_logit = (p - y) * m / weight_sum
        gw = z.T @ grad_logit + 2 * l2 * w
        gb = grad_logit.sum(axis=0)
        return value, np.concatenate([gw.ravel(), gb]).astype(np.float64)

    theta0 = np.zeros(d * a + a)
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 300})
    w = res.x[: d * a].reshape(d, a).astype(np.float32)
    return w, res.x[d * a :].astype(np.float32)


def _fit_mlp(z: Any, y: Any, m: Any, cfg: HeadConfig, seed: int) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    n, d = z.shape
    a = y.shape[1]
    h = cfg.hidden
    params = [
        (rng.standard_normal((d, h)) * np.sqrt(2.0 / d)).astype(np.float32),
        np.zeros(h, dtype=np.float32),
        (rng.standard_normal((h, a)) * np.sqrt(1.0 / h)).astype(np.float32),
        np.zeros(a, dtype=np.float32),
    ]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    step = 0
    arm_rate = m.mean(axis=0).clip(min=1e-3)
    # Small training sets (one small dataset's folds) still get enough optimiser steps.
    steps_per_epoch = -(-n // cfg.batch_size)
    epochs = max(cfg.epochs, -(-_MIN_STEPS // steps_per_epoch))
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            zb, yb, mb = z[idx], y[idx], m[idx]
            pre = zb @ params[0] + params[1]
            act = np.maximum(pre, 0.0)
            p = _sigmoid(act @ params[2] + params[3])
            # Each arm's loss is averaged over the records that observe it.
            g_out = (p - yb) * mb / (len(idx) * arm_rate)
            g_w2 = act.T @ g_out
            g_b2 = g_out.sum(axis=0)
            g_act = (g_out @ params[2].T) * (pre > 0)
            g_w1 = zb.T @ g_act
            g_b1 = g_act.sum(axis=0)
            grads = [g_w1 + cfg.l2 * params[0], g_b1, g_w2 + cfg.l2 * params[2], g_b2]
            step += 1
            for i, (param, grad) in enumerate(zip(params, grads, strict=True)):
                m1, m2 = moments[i]
                m1 *= 0.9
                m1 += 0.1 * grad
                m2 *= 0.999
                m2 += 0.001 * grad * grad
                m1_hat = m1 / (1 - 0.9**step)
                m2_hat = m2 / (1 - 0.999**step)
                param -= (cfg.lr * m1_hat / (np.sqrt(m2_hat) + 1e-8)).astype(np.float32)
    return tuple(params)


def train_head(
    x: Any, y: Any, mask: Any, arms: tuple[str, ...], *, n_embed: int, cfg: HeadConfig
) -> HeadParams:
    """Fit a head on inputs ``x`` (N, D), soft labels ``y`` (N, A) and observation ``mask``."""
    x = np.asarray(x, dtype=np.float32)
    y = np.nan_to_num(np.asarray(y, dtype=np.float32))
    m = np.asarray(mask, dtype=np.float32)
    mean, scale = _standardiser(x, n_embed)
    z = (x - mean) / scale
    meta = {"config": cfg.__dict__.copy(), "n_train": len(x)}
    keep = np.ones(z.shape[1], dtype=bool)
    if cfg.linear_features is not None:
        keep[n_embed:] = False
        keep[[n_embed + i for i in cfg.linear_features if n_embed + i < z.shape[1]]] = True
    if cfg.kind == "linear":
        w_kept, b = _fit_linear(z[:, keep], y, m, cfg.l2)
        w = np.zeros((z.shape[1], y.shape[1]), dtype=np.float32)
        w[keep] = w_kept
        return HeadParams(arms, mean, scale, w, b, meta=meta)
    members = [_fit_mlp(z, y, m, cfg, cfg.seed + k) for k in range(cfg.n_members)]
    k = len(members)
    w1 = np.concatenate([p[0] for p in members], axis=1)
    b1 = np.concatenate([p[1] for p in members])
    w2 = np.concatenate([p[2] for p in members], axis=0) / k
    b2 = sum(p[3] for p in members) / k
    if cfg.kind == "ensemble":
        w_lin_kept, b_lin = _fit_linear(z[:, keep], y, m, cfg.linear_l2)
        w_lin = np.zeros((z.shape[1], y.shape[1]), dtype=np.float32)
        w_lin[keep] = w_lin_kept
        eye = np.eye(y.shape[1], dtype=np.float32)
        w1 = np.concatenate([w1, w_lin, -w_lin], axis=1)
        b1 = np.concatenate([b1, np.zeros(2 * y.shape[1], dtype=np.float32)])
        w2 = np.concatenate([w2 / 2.0, eye / 2.0, -eye / 2.0], axis=0)
        b2 = (b2 + b_lin) / 2.0
    return HeadParams(
        arms,
        mean,
        scale,
        w2.astype(np.float32),
        np.asarray(b2, np.float32),
        w1.astype(np.float32),
        b1.astype(np.float32),
        meta=meta,
    )


def head_to_onnx(params: HeadParams, path: Path, *, n_embed: int) -> None:
    """Write the head as an ONNX graph (inputs ``embedding``, ``features``; output ``probs``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n_feat = params.mean.shape[0] - n_embed
    inits = [
        numpy_helper.from_array(params.mean.astype(np.float32), "mean"),
        numpy_helper.from_array(params.scale.astype(np.float32), "scale"),
        numpy_helper.from_array(params.w2.astype(np.float32), "w2"),
        numpy_helper.from_array(params.b2.astype(np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Concat", ["embedding", "features"], ["x"], axis=1),
        helper.make_node("Sub", ["x", "mean"], ["xc"]),
        helper.make_node("Div", ["xc", "scale"], ["z"]),
    ]
    last = "z"
    if params.w1 is not None:
        inits += [
            numpy_helper.from_array(params.w1.astype(np.float32), "w1"),
            numpy_helper.from_array(params.b1.astype(np.float32), "b1"),
        ]
        nodes += [
            helper.make_node("MatMul", ["z", "w1"], ["h0"]),
            helper.make_node("Add", ["h0", "b1"], ["h1"]),
            helper.make_node("Relu", ["h1"], ["h"]),
        ]
        last = "h"
    nodes += [
        helper.make_node("MatMul", [last, "w2"], ["o0"]),
        helper.make_node("Add", ["o0", "b2"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["probs"]),
    ]
    graph = helper.make_graph(
        nodes,
        "reward_head",
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", n_embed]),
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", n_feat]),
        ],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", len(params.arms)])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.doc_string = "arms: " + ",".join(params.arms)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def onnx_parity(params: HeadParams, path: Path, x: Any, *, n_embed: int) -> float:
    """Max abs difference between the numpy head and its ONNX graph on inputs ``x``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.asarray(x, dtype=np.float32)
    got = sess.run(["probs"], {"embedding": x[:, :n_embed], "features": x[:, n_embed:]})[0]
    return float(np.max(np.abs(got - params.predict(x))))
