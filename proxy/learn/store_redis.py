"""The shared outcome store: a Redis Stream per policy that every replica appends to.

Keys, under ``prefix`` (default ``adaptive:learn``):

* ``{prefix}:s:{policy}``: the policy's stream; an entry is a record (``k=r``) or a label
  (``k=l``) with its request id (``rid``) and JSON document (``d``). ``XADD … MAXLEN ~`` bounds it;
  ``XTRIM … MINID ~`` drops what is past retention.
* ``{prefix}:rq:{request_id}``: the request's index (policy, the record's stream id, its time, and
  one ``l:<stream id>`` field per label), expiring ``retention + tombstone`` after the record, so
  a lookup joins labels to the record by request id without scanning, and an id whose record was
  trimmed reads as expired, not unknown.
* ``{prefix}:n:{policy}``: label totals by kind; ``{prefix}:policies``: the policies logged.
* ``{prefix}:m:{policy}`` / ``md:`` / ``mr:``: head versions in order, their documents, the
  rolled-back ones; ``{prefix}:ls:{policy}``: the learner's state.

Each record and label is one Lua call (atomic: the index never points at a half-written entry),
pipelined per batch. The label script builds the stream's key from the policy it reads from the
index, so this store needs a single Redis (not a cluster), as the rest of the proxy does.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
from proxy.wire.redis_client import call_with_fresh_retry

_T = TypeVar("_T")
DEFAULT_PREFIX = "adaptive:learn"
DEFAULT_MAX_ENTRIES = 100_000

RECORD_LUA = """
redis.call('DEL', KEYS[2])
local sid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
                       'k', 'r', 'rid', ARGV[4], 'd', ARGV[6])
redis.call('HSET', KEYS[2], 'p', ARGV[3], 's', sid, 't', ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
return sid
"""
LABEL_LUA = """
local policy = redis.call('HGET', KEYS[1], 'p')
if not policy then return 0 end
local sid = redis.call('XADD', ARGV[1] .. ':s:' .. policy, 'MAXLEN', '~', ARGV[2], '*',
                       'k', 'l', 'rid', ARGV[3], 'd', ARGV[5])
redis.call('HSET', KEYS[1], 'l:' .. sid, ARGV[4])
redis.call('HINCRBY', ARGV[1] .. ':n:' .. policy, ARGV[4], 1)
return 1
"""
ROLLBACK_LUA = """
local versions = redis.call('LRANGE', KEYS[1], 0, -1)
for i = #versions, 1, -1 do
  if redis.call('SISMEMBER', KEYS[2], versions[i]) == 0 then
    redis.call('SADD', KEYS[2], versions[i])
    return versions[i]
  end
end
return false
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _sid_key(sid: str) -> tuple[int, int]:
    ms, _, seq = sid.partition("-")
    return int(ms), int(seq or 0)


class RedisOutcomeStore:
    """:class:`proxy.learn.store.OutcomeStore` on one Redis (``redis.asyncio`` client)."""

    def __init__(
        self,
        redis: Any,
        *,
        retention_days: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        tombstone_days: float = DEFAULT_TOMBSTONE_DAYS,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = 2.0,
        clock: Callable[[], float] | None = None,
        owns_client: bool = True,
    ) -> None:
        import time

        if retention_days <= 0:
            raise ValueError("retention_days must be positive")
        self._redis = redis
        self._retention_days = retention_days
        self._max_entries = max_entries
        self._index_ttl_s = max(int((retention_days + tombstone_days) * DAY_S), 1)
        self._prefix = prefix
        self._timeout_s = timeout_s
        self._clock = clock or time.time
        # A client shared with the decision cache or the budgets is closed by its owner.
        self._owns_client = owns_client
        self._record_script = redis.register_script(RECORD_LUA)
        self._label_script = redis.register_script(LABEL_LUA)
        self._rollback_script = redis.register_script(ROLLBACK_LUA)

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}:{kind}:{name}"

    async def _call(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return await call_with_fresh_retry(
                self._redis, operation, timeout_s=self._timeout_s, retry=True
            )
        except Exception as exc:
            raise OutcomeStoreError(f"outcome store (Redis) failed: {exc!r}") from exc

    # -- the log --------------------------------------------------------------------------

    async def write(self, entries: Sequence[Entry]) -> WriteResult:
        """One pipelined round trip of Lua calls (see :meth:`OutcomeStore.write`)."""
        if not entries:
            return WriteResult(0)
        docs = [encode_entry(e) for e in entries]

        async def run() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry, doc in zip(entries, docs, strict=True):
                    await self._queue_entry(pipe, entry, doc)
                result: list[Any] = await pipe.execute()
                return result

        results = await self._call(run)
        orphans = sum(
            1 for e, r in zip(entries, results, strict=True) if isinstance(e, LabelRecord) and not r
        )
        return WriteResult(len(entries) - orphans, orphans)

    async def _queue_entry(self, pipe: Any, entry: Entry, doc: str) -> None:
        index = self._key("rq", entry.request_id)
        if isinstance(entry, OutcomeRecord):
            await self._record_script(
                keys=[self._key("s", entry.policy), index, f"{self._prefix}:policies"],
                args=[
                    self._max_entries,
                    self._index_ttl_s,
                    entry.policy,
                    entry.request_id,
                    repr(entry.unix_time_s),
                    doc,
                ],
                client=pipe,
            )
        else:
            await self._label_script(
                keys=[index],
                args=[self._prefix, self._max_entries, entry.request_id, entry.kind, doc],
                client=pipe,
            )

    async def get(self, request_id: str) -> Lookup:
        """Found, missing (no index), or expired (past retention, or trimmed from the stream)."""
        cutoff = retention_cutoff(self._clock(), self._retention_days)
        index = await self._call(lambda: self._redis.hgetall(self._key("rq", request_id)))
        if not index:
            return Lookup("missing")
        fields = {_text(k): _text(v) for k, v in index.items()}
        if "s" not in fields or float(fields.get("t", "0")) < cutoff:
            return Lookup("expired")
        stream = self._key("s", fields["p"])
        found = await self._entries(stream, [fields["s"], *_label_sids(fields)])
        record = _record_of(found.get(fields["s"]))
        if record is None:
            return Lookup("expired")
        labels = [_label_of(found.get(sid)) for sid in _label_sids(fields)]
        return Lookup("found", record, tuple(label for label in labels if label is not None))

    async def _entries(self, stream: str, sids: Sequence[str]) -> dict[str, Mapping[str, str]]:
        """The stream entries with these ids that are still there."""

        async def run() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for sid in sids:
                    pipe.xrange(stream, sid, sid)
                result: list[Any] = await pipe.execute()
                return result

        out: dict[str, Mapping[str, str]] = {}
        for found in await self._call(run) if sids else []:
            for sid, fields in found or ():
                out[_text(sid)] = {_text(k): _text(v) for k, v in fields.items()}
        return out

    async def labelled(
        self, policy: str, *, after: str | None = None, limit: int = 500
    ) -> LabelledPage:
        """Labelled records of ``policy`` by stream position."""
        cutoff = retention_cutoff(self._clock(), self._retention_days)
        stream = self._key("s", policy)
        start = f"({after}" if after else "-"
        page = await self._call(lambda: self._redis.xrange(stream, start, "+", count=limit))
        page = [(_text(sid), {_text(k): _text(v) for k, v in f.items()}) for sid, f in page]
        cursor = page[-1][0] if len(page) == limit else None
        records = [(sid, f) for sid, f in page if f.get("k") == "r"]

        async def indexes() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for _, f in records:
                    pipe.hgetall(self._key("rq", f["rid"]))
                result: list[Any] = await pipe.execute()
                return result

        wanted: list[tuple[str, str, list[str]]] = []
        for (sid, f), index in zip(
            records, await self._call(indexes) if records else [], strict=True
        ):
            fields = {_text(k): _text(v) for k, v in (index or {}).items()}
            # A replaced record's old entry is not the one its index points at.
            if fields.get("s") != sid or float(fields.get("t", "0")) < cutoff:
                continue
            label_sids = _label_sids(fields)
            if label_sids:
                wanted.append((sid, f["d"], label_sids))
        found = await self._entries(stream, [s for _, _, sids in wanted for s in sids])
        items = []
        for sid, doc, label_sids in wanted:
            record = decode_record(doc)
            labels = [_label_of(found.get(s)) for s in label_sids]
            kept = tuple(label for label in labels if label is not None)
            if record is not None and kept:
                items.append(Labelled(record, kept, sid))
        return LabelledPage(tuple(items), cursor)

    async def label_totals(self, policy: str) -> dict[LabelKind, int]:
        """Label totals of ``policy`` by kind."""
        raw = await self._call(lambda: self._redis.hgetall(self._key("n", policy)))
        out: dict[LabelKind, int] = dict.fromkeys(LABEL_KINDS, 0)
        for k, v in raw.items():
            kind = _text(k)
            if kind in out:
                out[kind] = int(_text(v))  # type: ignore[index]
        return out

    async def trim(self, now_unix_s: float) -> int:
        """``XTRIM MINID ~`` every policy's stream to the retention cutoff."""
        cutoff_ms = max(int(retention_cutoff(now_unix_s, self._retention_days) * 1000), 0)
        policies = await self._call(lambda: self._redis.smembers(f"{self._prefix}:policies"))
        gone = 0
        for policy in sorted(_text(p) for p in policies):
            trim = functools.partial(
                self._redis.xtrim, self._key("s", policy), minid=f"{cutoff_ms}-0", approximate=True
            )
            gone += int(await self._call(trim))
        return gone

    # -- head versions and learner state --------------------------------------------------

    async def put_model(self, model: ModelVersion) -> None:
        """Append ``model`` to its policy's history (one transaction)."""
        doc = model.model_dump_json()

        async def run() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(self._key("md", model.policy), model.version, doc)
                pipe.srem(self._key("mr", model.policy), model.version)
                pipe.lrem(self._key("m", model.policy), 0, model.version)
                pipe.rpush(self._key("m", model.policy), model.version)
                await pipe.execute()

        await self._call(run)

    async def models(self, policy: str) -> list[ModelVersion]:
        """The version history of ``policy``, oldest first."""

        async def run() -> list[Any]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.lrange(self._key("m", policy), 0, -1)
                pipe.hgetall(self._key("md", policy))
                pipe.smembers(self._key("mr", policy))
                result: list[Any] = await pipe.execute()
                return result

        versions, docs, rolled = await self._call(run)
        by_version = {_text(k): _text(v) for k, v in docs.items()}
        back = {_text(v) for v in rolled}
        out = []
        for version in (_text(v) for v in versions):
            if version in by_version:
                model = ModelVersion.model_validate_json(by_version[version])
                out.append(model.model_copy(update={"rolled_back": version in back}))
        return out

    async def current_model(self, policy: str) -> ModelVersion | None:
        """The newest version not rolled back."""
        return current_of(await self.models(policy))

    async def rollback_model(self, policy: str) -> ModelVersion | None:
        """Flag the current version rolled back (atomically); returns the one now current."""
        await self._call(
            lambda: self._rollback_script(keys=[self._key("m", policy), self._key("mr", policy)])
        )
        return await self.current_model(policy)

    async def learner_state(self, policy: str) -> LearnerState:
        """The learner's state for ``policy``."""
        raw = await self._call(lambda: self._redis.get(self._key("ls", policy)))
        return LearnerState() if raw is None else LearnerState.from_json(json.loads(raw))

    async def put_learner_state(self, policy: str, state: LearnerState) -> None:
        """Replace the learner's state for ``policy``."""
        doc = json.dumps(state.to_json())
        await self._call(lambda: self._redis.set(self._key("ls", policy), doc))

    async def aclose(self) -> None:
        """Close the client's connections (when this store owns the client)."""
        if self._owns_client:
            await self._redis.aclose()


def _label_sids(fields: Mapping[str, str]) -> list[str]:
    return sorted((k[2:] for k in fields if k.startswith("l:")), key=_sid_key)


def _record_of(fields: Mapping[str, str] | None) -> OutcomeRecord | None:
    if not fields or fields.get("k") != "r":
        return None
    return decode_record(fields["d"])


def _label_of(fields: Mapping[str, str] | None) -> LabelRecord | None:
    if not fields or fields.get("k") != "l":
        return None
    return decode_label(fields["d"])
