"""The embedded outcome store: one SQLite file (WAL), every call in a thread of its own.

sqlite3 blocks, so every call runs in a one-thread executor, never on the event loop; the
connection lives in that thread. WAL lets a separate learner process read while the server
writes; ``busy_timeout`` makes a writer wait for the other's lock (in the store's thread) instead
of failing. A batch is one transaction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from proxy.learn.records import (
    LABEL_KINDS,
    Entry,
    LabelKind,
    LabelRecord,
    OutcomeRecord,
    decode_label,
    decode_record,
    encode_entry,
)
from proxy.learn.store import (
    DAY_S,
    DEFAULT_TOMBSTONE_DAYS,
    Labelled,
    LabelledPage,
    LearnerState,
    Lookup,
    ModelVersion,
    OutcomeStoreError,
    WriteResult,
    current_of,
    retention_cutoff,
)

_T = TypeVar("_T")
BUSY_TIMEOUT_MS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    policy TEXT NOT NULL,
    unix_time_s REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_policy ON records(policy, seq);
CREATE INDEX IF NOT EXISTS records_time ON records(unix_time_s);
CREATE TABLE IF NOT EXISTS labels(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_request ON labels(request_id, seq);
CREATE TABLE IF NOT EXISTS expired(request_id TEXT PRIMARY KEY, unix_time_s REAL NOT NULL);
CREATE INDEX IF NOT EXISTS expired_time ON expired(unix_time_s);
CREATE TABLE IF NOT EXISTS label_totals(
    policy TEXT NOT NULL, kind TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY(policy, kind)
);
CREATE TABLE IF NOT EXISTS models(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    policy TEXT NOT NULL,
    version TEXT NOT NULL,
    doc TEXT NOT NULL,
    rolled_back INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS models_policy ON models(policy, seq);
CREATE TABLE IF NOT EXISTS learner_state(policy TEXT PRIMARY KEY, doc TEXT NOT NULL);
"""


class SqliteOutcomeStore:
    """:class:`proxy.learn.store.OutcomeStore` in one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        retention_days: float,
        max_records: int | None = None,
        tombstone_days: float = DEFAULT_TOMBSTONE_DAYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention_days <= 0:
            raise ValueError("retention_days must be positive")
        self.path = Path(path)
        self._retention_days = retention_days
        self._max_records = max_records
        self._tombstone_s = tombstone_days * DAY_S
        self._clock = clock
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="outcome-sqlite"
        )
        self._conn: sqlite3.Connection | None = None

    # -- plumbing -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                str(self.path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
            )
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a power loss may drop the last transactions, never corrupt the file.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args))
        except (sqlite3.Error, OSError) as exc:
            raise OutcomeStoreError(f"outcome store {self.path} failed: {exc}") from exc

    def _transaction(self, body: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = body(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return out

    # -- the log --------------------------------------------------------------------------

    async def write(self, entries: Sequence[Entry]) -> WriteResult:
        """Write one batch in one transaction (see :meth:`OutcomeStore.write`)."""
        rows = [(e, encode_entry(e)) for e in entries]
        return await self._run(self._transaction, functools.partial(_write_rows, rows))

    async def get(self, request_id: str) -> Lookup:
        """Found, missing, or expired (past retention, or remembered as trimmed)."""
        cutoff = retention_cutoff(self._clock(), self._retention_days)
        return await self._run(self._get, request_id, cutoff)

    def _get(self, request_id: str, cutoff: float) -> Lookup:
        conn = self._connection()
        row = conn.execute(
            "SELECT doc, unix_time_s FROM records WHERE request_id = ?", (request_id,)
        ).fetchone()
        if row is None:
            gone = conn.execute(
                "SELECT 1 FROM expired WHERE request_id = ?", (request_id,)
            ).fetchone()
            return Lookup("expired" if gone else "missing")
        record = decode_record(row[0])
        if record is None:
            return Lookup("missing")
        if float(row[1]) < cutoff:
            return Lookup("expired")
        return Lookup("found", record, tuple(_labels_of(conn, [request_id]).get(request_id, ())))

    async def labelled(
        self, policy: str, *, after: str | None = None, limit: int = 500
    ) -> LabelledPage:
        """Labelled records of ``policy`` by log position (``seq``)."""
        cutoff = retention_cutoff(self._clock(), self._retention_days)
        return await self._run(self._labelled, policy, int(after or 0), limit, cutoff)

    def _labelled(self, policy: str, after: int, limit: int, cutoff: float) -> LabelledPage:
        conn = self._connection()
        rows = conn.execute(
            "SELECT seq, request_id, doc FROM records WHERE policy = ? AND seq > ? "
            "AND unix_time_s >= ? AND EXISTS "
            "(SELECT 1 FROM labels WHERE labels.request_id = records.request_id) "
            "ORDER BY seq LIMIT ?",
            (policy, after, cutoff, limit),
        ).fetchall()
        labels = _labels_of(conn, [r[1] for r in rows])
        items = []
        for seq, request_id, doc in rows:
            record = decode_record(doc)
            if record is not None and labels.get(request_id):
                items.append(Labelled(record, tuple(labels[request_id]), str(seq)))
        cursor = str(rows[-1][0]) if len(rows) == limit else None
        return LabelledPage(tuple(items), cursor)

    async def label_totals(self, policy: str) -> dict[LabelKind, int]:
        """Monotonic label counts of ``policy`` by kind."""
        return await self._run(self._label_totals, policy)

    def _label_totals(self, policy: str) -> dict[LabelKind, int]:
        out: dict[LabelKind, int] = dict.fromkeys(LABEL_KINDS, 0)
        rows = self._connection().execute(
            "SELECT kind, n FROM label_totals WHERE policy = ?", (policy,)
        )
        for kind, n in rows:
            if kind in out:
                out[kind] = int(n)
        return out

    async def trim(self, now_unix_s: float) -> int:
        """Delete records past retention or beyond ``max_records``, keeping their ids as
        tombstones for ``tombstone_days``."""
        cutoff = retention_cutoff(now_unix_s, self._retention_days)
        return await self._run(
            self._transaction, functools.partial(self._trim, cutoff, self._max_records)
        )

    def _trim(self, cutoff: float, max_records: int | None, conn: sqlite3.Connection) -> int:
        where = "unix_time_s < ?"
        params: tuple[Any, ...] = (cutoff,)
        if max_records is not None:
            bound = conn.execute(
                "SELECT seq FROM records ORDER BY seq DESC LIMIT 1 OFFSET ?", (max_records,)
            ).fetchone()
            if bound is not None:
                where, params = "(unix_time_s < ? OR seq <= ?)", (cutoff, int(bound[0]))
        conn.execute(
            f"INSERT OR REPLACE INTO expired SELECT request_id, unix_time_s FROM records "
            f"WHERE {where}",
            params,
        )
        conn.execute(
            f"DELETE FROM labels WHERE request_id IN (SELECT request_id FROM records "
            f"WHERE {where})",
            params,
        )
        gone = conn.execute(f"DELETE FROM records WHERE {where}", params).rowcount
        conn.execute("DELETE FROM expired WHERE unix_time_s < ?", (cutoff - self._tombstone_s,))
        return int(gone)

    # -- head versions and learner state --------------------------------------------------

    async def put_model(self, model: ModelVersion) -> None:
        """Append ``model`` to its policy's history (it becomes current)."""
        doc = model.model_dump_json()
        await self._run(
            self._transaction,
            lambda conn: conn.execute(
                "INSERT INTO models(policy, version, doc, rolled_back) VALUES (?, ?, ?, ?)",
                (model.policy, model.version, doc, int(model.rolled_back)),
            ),
        )

    async def models(self, policy: str) -> list[ModelVersion]:
        """The version history of ``policy``, oldest first."""
        return await self._run(self._models, policy)

    def _models(self, policy: str) -> list[ModelVersion]:
        rows = self._connection().execute(
            "SELECT doc, rolled_back FROM models WHERE policy = ? ORDER BY seq", (policy,)
        )
        return [
            ModelVersion.model_validate_json(doc).model_copy(update={"rolled_back": bool(flag)})
            for doc, flag in rows
        ]

    async def current_model(self, policy: str) -> ModelVersion | None:
        """The newest version not rolled back."""
        return current_of(await self.models(policy))

    async def rollback_model(self, policy: str) -> ModelVersion | None:
        """Flag the current version rolled back; the one before it (or the prior) serves."""
        return await self._run(self._transaction, functools.partial(self._rollback, policy))

    def _rollback(self, policy: str, conn: sqlite3.Connection) -> ModelVersion | None:
        conn.execute(
            "UPDATE models SET rolled_back = 1 WHERE seq = (SELECT MAX(seq) FROM models "
            "WHERE policy = ? AND rolled_back = 0)",
            (policy,),
        )
        return current_of(self._models(policy))

    async def learner_state(self, policy: str) -> LearnerState:
        """The learner's state for ``policy``."""
        row = await self._run(
            lambda: (
                self._connection()
                .execute("SELECT doc FROM learner_state WHERE policy = ?", (policy,))
                .fetchone()
            )
        )
        return LearnerState() if row is None else LearnerState.from_json(json.loads(row[0]))

    async def put_learner_state(self, policy: str, state: LearnerState) -> None:
        """Replace the learner's state for ``policy``."""
        doc = json.dumps(state.to_json())
        await self._run(
            lambda: self._connection().execute(
                "INSERT OR REPLACE INTO learner_state(policy, doc) VALUES (?, ?)", (policy, doc)
            )
        )

    async def aclose(self) -> None:
        """Close the connection in its thread and stop the thread."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._pool, conn.close)
        self._pool.shutdown(wait=True)


def _write_rows(rows: Sequence[tuple[Entry, str]], conn: sqlite3.Connection) -> WriteResult:
    written = orphans = 0
    for entry, doc in rows:
        if isinstance(entry, OutcomeRecord):
            # A repeated request id replaces the earlier record and its labels, and moves to
            # the end of the log (a new seq) so that cursors see it.
            conn.execute("DELETE FROM labels WHERE request_id = ?", (entry.request_id,))
            conn.execute("DELETE FROM records WHERE request_id = ?", (entry.request_id,))
            conn.execute("DELETE FROM expired WHERE request_id = ?", (entry.request_id,))
            conn.execute(
                "INSERT INTO records(request_id, policy, unix_time_s, doc) VALUES (?, ?, ?, ?)",
                (entry.request_id, entry.policy, entry.unix_time_s, doc),
            )
            written += 1
            continue
        owner = conn.execute(
            "SELECT policy FROM records WHERE request_id = ?", (entry.request_id,)
        ).fetchone()
        if owner is None:
            orphans += 1
            continue
        conn.execute(
            "INSERT INTO labels(request_id, kind, doc) VALUES (?, ?, ?)",
            (entry.request_id, entry.kind, doc),
        )
        conn.execute(
            "INSERT INTO label_totals(policy, kind, n) VALUES (?, ?, 1) "
            "ON CONFLICT(policy, kind) DO UPDATE SET n = n + 1",
            (owner[0], entry.kind),
        )
        written += 1
    return WriteResult(written, orphans)


def _labels_of(
    conn: sqlite3.Connection, request_ids: Sequence[str]
) -> dict[str, list[LabelRecord]]:
    out: dict[str, list[LabelRecord]] = {}
    # SQLite's default limit on bound parameters is 999 (older builds): chunk below it.
    for start in range(0, len(request_ids), 500):
        chunk = list(request_ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT request_id, doc FROM labels WHERE request_id IN ({marks}) ORDER BY seq",
            chunk,
        )
        for request_id, doc in rows:
            label = decode_label(doc)
            if label is not None:
                out.setdefault(request_id, []).append(label)
    return out
