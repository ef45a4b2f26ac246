"""The request log: every served request as a row of ``serving_requests``, written off the request path.

Requests put a record on a queue and return; one thread drains it in batches into Postgres. A
database that is down costs log rows (counted and logged), never a failed request. Prompts and
answers are stored only with ``TWIN_SERVING__LOG_PROMPTS=true`` (the default; off for privacy).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

_COLUMNS = [
    "request_id", "profile", "route", "model", "model_version", "status", "error", "stream", "latency_s",
    "ttft_s", "retrieval_s", "prompt_tokens", "completion_tokens", "finish_reason", "target", "chunk_ids",
    "links", "prompt", "response",
]  # fmt: skip
# Built once from the fixed column list above (no input reaches it).
_INSERT = "INSERT INTO serving_requests ({}) VALUES ({})".format(  # noqa: S608
    ", ".join(_COLUMNS), ", ".join(f"%({c})s" for c in _COLUMNS)
)


@dataclass
class RequestRecord:
    request_id: str
    profile: str
    route: str
    model: str
    status: int = 200
    model_version: int | None = None
    error: str | None = None
    stream: bool = False
    latency_s: float = 0.0
    ttft_s: float | None = None
    retrieval_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    target: str | None = None
    chunk_ids: list[list[Any]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    prompt: str | None = None
    response: str | None = None


class RequestLog:
    def __init__(self, dsn: str, *, log_prompts: bool, max_queue: int = 10_000) -> None:
        self._dsn = dsn
        self._log_prompts = log_prompts
        self._queue: queue.Queue[RequestRecord | None] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def record(self, rec: RequestRecord) -> None:
        if not self._log_prompts:
            rec.prompt = rec.response = None
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="request-log", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(rec)
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)

    def _drain(self) -> None:
        from twin.adapters.postgres import connect, migrate

        conn: Any = None
        while True:
            batch = [self._queue.get()]
            while len(batch) < 100:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            rows = [r for r in batch if r is not None]
            try:
                if conn is None or conn.closed:
                    conn = connect(self._dsn, timeout_s=5)
                    migrate(conn)
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(_INSERT, [_params(r) for r in rows])
            except Exception as exc:  # the log must never take serving down
                self.dropped += len(rows)
                log.warning("request log: %d row(s) dropped: %s", len(rows), exc)
                conn = None
            if stop:
                if conn is not None:
                    conn.close()
                return


def _params(rec: RequestRecord) -> dict[str, Any]:
    data = dict(rec.__dict__)
    data["chunk_ids"] = json.dumps(rec.chunk_ids)
    data["links"] = json.dumps(rec.links)
    return data
