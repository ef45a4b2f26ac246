"""What serving asks of a chat engine and what it gets back, engine-neutral (vLLM or transformers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

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
