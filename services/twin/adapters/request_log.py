"""The request log in Postgres: every served request as a row of ``serving_requests``, written off
the request path (the :class:`twin.ports.RequestLog` serving uses).

Requests put a record on a queue and return; one thread drains it in batches into Postgres. A
database that is down costs log rows (counted in ``dropped`` and logged), never a failed request.
Prompts and answers are stored only with ``log_prompts`` (``TWIN_SERVING__LOG_PROMPTS=true``;
off by default, for privacy).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import threading
from typing import Any

from twin.domain.generation import RequestRecord

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


class PostgresRequestLog:
    def __init__(self, dsn: str, *, log_prompts: bool, max_queue: int = 10_000) -> None:
        self._dsn = dsn
        self._log_prompts = log_prompts
        self._queue: queue.Queue[RequestRecord | None] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def record(self, record: RequestRecord) -> None:
        if not self._log_prompts:
            record = dataclasses.replace(record, prompt=None, response=None)
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="request-log", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(record)
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


def _params(record: RequestRecord) -> dict[str, Any]:
    data = dataclasses.asdict(record)
    data["chunk_ids"] = json.dumps(record.chunk_ids)
    data["links"] = json.dumps(record.links)
    return data
