"""Serving's vocabulary, engine-neutral (vLLM or transformers) and free of any wire format.

Two seams use these values:

- **the chat engine** (:class:`twin.ports.ChatEngine`): token ids and :class:`GenerationParams` in,
  :class:`EngineDelta` pieces out, with an :class:`AdapterRef` naming the LoRA weights;
- **the ingress → engine deployment hop** (across a Ray Serve handle, so every value here
  pickles): a :class:`GenerationRequest` in, a stream of :data:`GenerationEvent` out: exactly one
  :class:`GenerationStart` or :class:`GenerationFailure` first, then (after a start) the
  engine's :class:`EngineDelta` pieces unchanged, the last one carrying ``finish_reason``. The
  ingress renders them as OpenAI's JSON or SSE; nothing on this side knows HTTP.

:class:`RequestRecord` is what one served request leaves in the request log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length"]

# Temperatures below this sample greedily, as vLLM does: dividing logits by a temperature this small
# (a client may send 5e-324) overflows them to inf and sampling then fails on NaN probabilities.
SAMPLING_EPS = 1e-5


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int
    temperature: float = 0.7
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @property
    def greedy(self) -> bool:
        """Whether this request decodes greedily (temperature 0, or too small to divide by)."""
        return self.temperature < SAMPLING_EPS


@dataclass(frozen=True)
class AdapterRef:
    """A LoRA adapter on local disk, as engines load it: unique name, the registry version, a path."""

    name: str
    version: int
    path: str


@dataclass(frozen=True)
class EngineDelta:
    """A piece of generated text; the last one has ``finish_reason`` set."""

    text: str
    tokens: int = 0  # tokens generated in this piece
    finish_reason: FinishReason | None = None


@dataclass
class StopTrimmer:
    """Streams text while cutting it at the first stop sequence, as OpenAI does (the stop sequence
    itself is not returned). Holds back just enough characters to recognise a stop sequence that
    arrives split across pieces."""

    stops: tuple[str, ...]
    _pending: str = ""
    stopped: bool = field(default=False)

    def feed(self, text: str) -> str:
        """The text that can be released now (empty once stopped)."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        buffer = self._pending + text
        cut = min((i for i in (buffer.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, self._pending = True, ""
            return buffer[:cut]
        keep = max(len(s) for s in self.stops) - 1
        release = buffer[: len(buffer) - keep] if keep else buffer
        # Never hold back more than could still start a stop sequence.
        self._pending = buffer[len(release) :]
        return release

    def flush(self) -> str:
        rest, self._pending = ("" if self.stopped else self._pending), ""
        return rest


@dataclass(frozen=True)
class Selector:
    """Which weights a model id asks for: the base model, an alias, or a version number."""

    base: bool = False
    alias: str | None = None
    version: int | None = None


@dataclass(frozen=True)
class ChatTurn:
    """One message as the engine's chat template takes it."""

    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    """One request as the ingress hands it to the engine deployment.

    Exactly one of ``messages`` (chat: the engine applies the base model's chat template) and
    ``prompt`` (completions: the raw text) is set. ``params.max_tokens`` is what the client asked
    for; the engine clamps it to the context window. ``footer`` is text to stream after the answer
    only where :func:`footer_fits` allows it (the inline ``Sources:`` block).
    """

    request_id: str
    selector: Selector
    params: GenerationParams
    messages: tuple[ChatTurn, ...] = ()
    prompt: str | None = None
    footer: str = ""

    def __post_init__(self) -> None:
        if (self.prompt is None) == (not self.messages):
            raise ValueError("a generation request has either messages or a prompt")


@dataclass(frozen=True)
class GenerationStart:
    """The engine took the request: how long the prompt is and which registered version answers."""

    prompt_tokens: int
    model_version: int | None  # None: the base model, no adapter


@dataclass(frozen=True)
class GenerationFailure:
    """The engine refused the request before generating (an HTTP status and why)."""

    status: int
    message: str
    param: str | None = None  # the request field at fault, as OpenAI's error object names it


GenerationEvent = GenerationStart | EngineDelta | GenerationFailure


def footer_fits(
    text: str,
    footer: str,
    *,
    finish_reason: FinishReason | None,
    stop: tuple[str, ...],
    generated_tokens: int,
    footer_tokens: int,
    max_tokens: int,
) -> bool:
    """Whether ``footer`` may follow the generated ``text`` without breaking what the client asked:
    never after an answer cut at ``max_tokens`` (``finish_reason`` length), only when the generated
    tokens plus the footer's stay within ``max_tokens``, and only when no stop sequence occurs in
    the text returned (the answer and the footer together)."""
    if not footer or finish_reason != "stop":
        return False
    if generated_tokens + footer_tokens > max_tokens:
        return False
    returned = text + footer
    return not any(s in returned for s in stop)


@dataclass(frozen=True)
class ServedVersion:
    """A registered version the engine can serve, with the aliases that point at it."""

    version: int
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServedModels:
    """What the engine deployment serves, for ``GET /v1/models``."""

    base_model: str
    alias: str  # the alias ``twin-<profile>`` follows
    current: int | None  # the version ``twin-<profile>`` answers with now (None: the base model)
    versions: tuple[ServedVersion, ...] = ()


@dataclass(frozen=True)
class EngineStatus:
    """The engine deployment's readiness (``GET /ready``)."""

    ready: bool  # the first registry sync finished
    engine: str  # vllm or transformers
    base_model: str
    model_version: int | None
    registry_error: str | None = None  # the last failed sync, if the latest one failed
    quantization: str | None = None  # as the engine runs the base model (None: unquantized)


@dataclass
class RequestRecord:
    """One served request as the request log keeps it (a row of ``serving_requests``); filled in
    while the request runs. ``prompt`` and ``response`` are dropped unless prompt logging is on."""

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
    chunk_ids: list[list[Any]] = field(default_factory=list)  # [document id, position] per chunk
    links: list[str] = field(default_factory=list)
    prompt: str | None = None
    response: str | None = None
