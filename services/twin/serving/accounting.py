"""Accounting: what every request costs and how it ended, as Prometheus metrics and a request-log row.

A :class:`Call` opens when a request arrives and counts as in flight until :meth:`Accounting.finish`
closes it, exactly once, whatever happened: answered (200), refused (4xx), failed (5xx) or
abandoned by the client mid-stream (499, nginx's convention). Closing records latency, time to the
first token, tokens and decode speed, and hands the :class:`~twin.domain.generation.RequestRecord`
to the :class:`twin.ports.RequestLog` (which drops prompts and answers unless prompt logging is on).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from twin import observability as obs
from twin.domain.generation import EngineDelta, GenerationStart, RequestRecord
from twin.ports import RequestLog
from twin.serving.grounding import Grounding
from twin.serving.schemas import ApiError


@dataclass
class Call:
    """One request in flight: its log record, and the timings and text its metrics need."""

    record: RequestRecord
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    text: list[str] = field(default_factory=list)
    done: bool = False

    def started_generating(self, start: GenerationStart) -> None:
        self.record.model_version = start.model_version
        self.record.prompt_tokens = start.prompt_tokens

    def grounded(self, grounding: Grounding, prompt: str) -> None:
        rec = self.record
        rec.retrieval_s, rec.target = grounding.retrieval_s, grounding.target.value
        rec.chunk_ids = [[str(h.document_id), h.position] for h in grounding.hits]
        rec.links = [link.url for link in grounding.links]
        rec.prompt = prompt
        obs.SERVE_RETRIEVAL.observe(grounding.retrieval_s)

    def add(self, delta: EngineDelta) -> None:
        """Count one piece of the answer (the first text is the time to first token)."""
        if delta.text:
            if self.first_token is None:
                self.first_token = time.perf_counter()
            self.text.append(delta.text)
        self.record.completion_tokens = (self.record.completion_tokens or 0) + delta.tokens
        if delta.finish_reason is not None:
            self.record.finish_reason = delta.finish_reason

    @property
    def completion_tokens(self) -> int:
        return self.record.completion_tokens or 0


class Accounting:
    def __init__(self, profile: str, log: RequestLog | None) -> None:
        self.profile = profile
        self.log = log

    def open(self, route: str, model: str, request_id: str, *, stream: bool = False) -> Call:
        obs.SERVE_INFLIGHT.inc()
        return Call(RequestRecord(request_id, self.profile, route, model, stream=stream))

    def serving_version(self, alias: str | None, version: int | None) -> None:
        """The version a request on the serving alias got: the gauge dashboards follow swaps by."""
        obs.SERVE_MODEL_VERSION.labels(profile=self.profile, alias=alias or "base").set(version or 0)

    def finish(self, call: Call, status: int, error: str | None = None) -> None:
        """Close ``call`` (once; later calls are no-ops): metrics, then the request log."""
        if call.done:
            return
        call.done = True
        obs.SERVE_INFLIGHT.dec()
        rec = call.record
        rec.status, rec.error = status, error
        rec.latency_s = time.perf_counter() - call.started
        if call.first_token is not None:
            rec.ttft_s = call.first_token - call.started
        rec.response = "".join(call.text) or None
        obs.SERVE_REQUESTS.labels(route=rec.route, status=str(status)).inc()
        obs.SERVE_LATENCY.labels(route=rec.route).observe(rec.latency_s)
        if status >= 400:
            obs.SERVE_ERRORS.labels(status=str(status)).inc()
        if rec.ttft_s is not None:
            obs.SERVE_TTFT.observe(rec.ttft_s)
        if rec.completion_tokens:
            obs.SERVE_TOKENS.inc(rec.completion_tokens)
            decode = rec.latency_s - (rec.ttft_s or 0.0)
            if rec.completion_tokens > 1 and decode > 0:
                obs.SERVE_TOKENS_PER_S.observe((rec.completion_tokens - 1) / decode)
        if self.log is not None:
            self.log.record(rec)

    def failed(self, call: Call, exc: Exception) -> None:
        """Close ``call`` for the error the client gets: an :class:`ApiError`'s own status, or the
        500 any other failure (a store, the model) becomes."""
        if isinstance(exc, ApiError):
            self.finish(call, exc.status, exc.message)
        else:
            self.finish(call, 500, f"{type(exc).__name__}: {exc}")

    def refused(self, route: str, model: str, error: ApiError) -> None:
        """Count and log a request refused before it reached the service (auth, validation)."""
        self.finish(self.open(route, model, uuid.uuid4().hex), error.status, error.message)
