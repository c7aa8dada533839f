"""The serving predictor: onnxruntime + ``tokenizers`` + numpy, micro-batched, off the event loop.

``OnnxPredictor.load()`` reads the shipped folder ``predictor_onnx/model/`` (or any folder built by
``adaptive-proxy predictor train``), checks every file against ``manifest.json`` and opens the
sessions, so a broken model fails at startup. ``await predict(batch)`` queues the conversations;
a single drain task collects queued conversations for ``batch_window_ms`` (or until
``max_batch_size``), runs it in a one-thread executor, and resolves each caller's futures.
Requests that arrive while a batch runs form the next batch.

Determinism: every prompt is its own encoder call at its exact length and its own head call
(:mod:`predictor_onnx.rows`), so a prediction is the same alone, in any batch, in ``decide``,
``allocate``, ``predict`` and the benchmark. With ``workers > 1`` the rows of one batch run
concurrently on the one session (``run`` is thread-safe and releases the GIL), using more cores
without a second copy of the weights.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from predictor_onnx.errors import PredictorLoadError
from predictor_onnx.features import FEATURE_NAMES, feature_matrix
from predictor_onnx.manifest import REBUILD_HINT, Manifest, read_manifest
from predictor_onnx.rows import embed_rows, head_rows
from predictor_onnx.schema import named_outputs
from predictor_onnx.text import PromptEncoder

#: One conversation: OpenAI ``messages`` (the proxy's ``Messages``; not imported from it).
Messages = Sequence[Mapping[str, Any]]


def session_options(threads: int) -> Any:
    """onnxruntime options of the predictor's sessions (one definition, used for both)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = max(threads, 1)
    opts.inter_op_num_threads = 1
    # The arena keeps the peak of the largest call (one row of at most max_tokens), and
    # reusing it avoids page-faulting fresh buffers on every call (1×256 tokens: 82 → 49 ms).
    opts.enable_cpu_mem_arena = True
    # Memory patterns are planned per input shape; ours change on every call.
    opts.enable_mem_pattern = False
    # Spinning intra-op threads would burn the core the proxy's event loop needs.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def shipped_model_dir() -> Path:
    """``predictor_onnx/model/`` of the installed package."""
    return Path(__file__).resolve().parent / "model"


class OnnxPredictor:
    """The ONNX reward predictor (implements ``proxy.decide.prediction.Predictor``)."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        max_batch_size: int = 32,
        batch_window_ms: float = 2.0,
        threads: int = 1,
        workers: int = 1,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if workers < 1:
            raise ValueError("workers must be at least 1")
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.manifest = manifest
        self._max_batch = max_batch_size
        self._window_s = max(batch_window_ms, 0.0) / 1000.0
        opts = session_options(threads)
        try:
            self._encoder = ort.InferenceSession(
                str(manifest.path(manifest.encoder)), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise PredictorLoadError(
                f"cannot open predictor encoder {manifest.path(manifest.encoder)}: {exc}; "
                f"{REBUILD_HINT}"
            ) from exc
        try:
            self._head = ort.InferenceSession(
                str(manifest.path(manifest.head)), opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise PredictorLoadError(
                f"cannot open predictor head {manifest.path(manifest.head)}: {exc}; {REBUILD_HINT}"
            ) from exc
        try:
            tokenizer = Tokenizer.from_file(str(manifest.path(manifest.tokenizer)))
            self._prompts = PromptEncoder(tokenizer, max_tokens=manifest.max_tokens)
        except Exception as exc:
            raise PredictorLoadError(
                f"cannot read predictor tokenizer {manifest.path(manifest.tokenizer)}: {exc}; "
                f"{REBUILD_HINT}"
            ) from exc
        if tuple(manifest.feature_names) != FEATURE_NAMES:
            raise PredictorLoadError(
                f"{manifest.path('manifest.json')} was built with other prompt features "
                f"({len(manifest.feature_names)}) than this runtime computes; {REBUILD_HINT}"
            )
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="onnx-predictor"
        )
        self._calls: concurrent.futures.ThreadPoolExecutor | None = None
        if workers > 1:
            self._calls = concurrent.futures.ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix="onnx-encoder"
            )
        self._queue: list[tuple[Messages, asyncio.Future[tuple[dict[str, float], Any]]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False
        self.batches_run = 0

    @classmethod
    def load(
        cls,
        path: Path | None = None,
        *,
        max_batch_size: int = 32,
        batch_window_ms: float = 2.0,
        threads: int = 1,
        workers: int = 1,
    ) -> OnnxPredictor:
        """Load and verify a predictor folder (default: the shipped model). Synchronous, ~0.3 s.

        ``threads``: onnxruntime intra-op threads per encoder call; ``workers``: encoder calls
        of one batch run concurrently (each on ``threads`` threads).
        """
        directory = Path(path) if path is not None else shipped_model_dir()
        manifest = read_manifest(directory)
        return cls(
            manifest,
            max_batch_size=max_batch_size,
            batch_window_ms=batch_window_ms,
            threads=threads,
            workers=workers,
        )

    @classmethod
    async def load_async(
        cls,
        path: Path | None = None,
        *,
        max_batch_size: int = 32,
        batch_window_ms: float = 2.0,
        threads: int = 1,
        workers: int = 1,
    ) -> OnnxPredictor:
        """:meth:`load` in the default executor, for callers on an event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            None,
            lambda: cls.load(
                path,
                max_batch_size=max_batch_size,
                batch_window_ms=batch_window_ms,
                threads=threads,
                workers=workers,
            ),
        )

    @property
    def output_names(self) -> tuple[str, ...]:
        """``p_<arm>`` for each arm, then the derived gains."""
        return self.manifest.output_names

    def predict_sync(self, batch: Sequence[Messages]) -> list[dict[str, float]]:
        """Predictions for ``batch`` in the calling thread (CLI, benchmarks; not for a loop)."""
        out: list[dict[str, float]] = []
        for start in range(0, len(batch), self._max_batch):
            out += self._infer(batch[start : start + self._max_batch])
        return out

    def _infer(self, batch: Sequence[Messages]) -> list[dict[str, float]]:
        return [values for values, _ in self._infer_embedded(batch)]

    def _infer_embedded(self, batch: Sequence[Messages]) -> list[tuple[dict[str, float], Any]]:
        if not batch:
            return []
        rows = self._prompts.ids_many(batch)
        embedding = embed_rows(self._encoder, rows, pool=self._calls)
        probs = head_rows(self._head, embedding, feature_matrix(batch))
        values = named_outputs(probs, self.manifest.arms, self.manifest.gains)
        return list(zip(values, embedding, strict=True))

    async def predict(self, batch: Sequence[Messages]) -> list[dict[str, float]]:
        """Predictions for each ``messages`` list, micro-batched with concurrent callers."""
        return [values for values, _ in await self.predict_embedded(batch)]

    async def predict_embedded(
        self, batch: Sequence[Messages]
    ) -> list[tuple[dict[str, float], Any]]:
        """:meth:`predict`, each prediction with the prompt's embedding ``(embedding_dim,)``
        float32 that the head read (what the outcome log keeps for the learner)."""
        if self._closed:
            raise RuntimeError("predictor is closed")
        if not batch:
            return []
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[tuple[dict[str, float], Any]]] = []
        for messages in batch:
            future: asyncio.Future[tuple[dict[str, float], Any]] = loop.create_future()
            self._queue.append((messages, future))
            futures.append(future)
        self._kick(loop)
        return list(await asyncio.gather(*futures))

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._drainer is not None:
            return  # the running drain loop picks the new items up after its current batch
        if len(self._queue) >= self._max_batch or self._window_s == 0.0:
            self._start_drain(loop)
        elif self._timer is None:
            self._timer = loop.call_later(self._window_s, self._start_drain, loop)

    def _start_drain(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._drainer is None and self._queue:
            self._drainer = loop.create_task(self._drain(loop))

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while self._queue:
                items = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
                live = [(m, f) for m, f in items if not f.done()]
                if not live:
                    continue
                try:
                    results = await loop.run_in_executor(
                        self._pool, self._infer_embedded, [m for m, _ in live]
                    )
                except Exception as exc:
                    for _, future in live:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.batches_run += 1
                for (_, future), result in zip(live, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._drainer = None

    async def aclose(self) -> None:
        """Finish the batch in flight, fail what is still queued, release the thread."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._queue = self._queue, []
        for _, future in pending:
            if not future.done():
                future.set_exception(RuntimeError("predictor closed before this prediction ran"))
        if self._drainer is not None:
            await asyncio.gather(self._drainer, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._calls is not None:
            self._calls.shutdown(wait=False, cancel_futures=True)
