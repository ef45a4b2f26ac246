"""A teacher LLM and a judge on any OpenAI-compatible endpoint (OpenAI, vLLM, this project's own
``twin serve``), through the official ``openai`` client.

- :class:`TeacherInstructions` implements the instruction-generator seam: for each response (the
  owner's own text) it asks the teacher for the one instruction that would produce it. Requests run
  a few at a time, each retried with backoff on connection errors, timeouts, 429 and 5xx; a reply
  that is empty or absurdly long is replaced by the offline template's instruction for that sample
  and counted (``fallbacks``, logged with the dataset version as ``generator.fallbacks``), so one
  bad reply never sinks a dataset build and a teacher that never answers usefully is visible.
- :class:`Judge` rates how likely a generated text is to be by the author of a reference text, 1-10.
  Two worked examples precede the question as earlier chat turns: without them a small model
  (SmolLM2-135M) continued the texts instead of rating them, with them it answers with a number,
  and a large judge is anchored on both ends of the scale. The rating is the first number 1-10 in
  the reply.

Temperature 0 and a fixed seed make both as repeatable as the endpoint allows; the dataset version
id covers the teacher's model and prompt version, not its replies.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from twin.domain.dataset import Seed
from twin.domain.errors import DependencyNotReady
from twin.domain.instructions import OfflineInstructions

TEACHER_PROMPT_VERSION = 1
_TEACHER_SYSTEM = (
    "You write the instruction a user would give an AI assistant so that the assistant answers with "
    "exactly the given text. Reply with the instruction only: one or two sentences, in the imperative, "
    "naming the platform and the topic. Never quote the text."
)
_JUDGE_SYSTEM = (
    "You compare writing styles. Given a reference text by an author and a candidate text, rate from 1 "
    "to 10 how likely it is that the same author wrote the candidate, judging voice and style only "
    "(sentence rhythm, word choice, tone), not topic or quality. Reply with the number only."
)
_JUDGE_QUESTION = (
    "On a scale of 1 to 10, how likely is it that the author of the reference wrote the candidate? "
    "Reply with one number from 1 to 10."
)
_SHOT_REFERENCE = "We shipped it on Friday. Nobody died. Write the runbook before you need it."
# (candidate, rating): one plainly by someone else, one plainly in the reference's voice.
_JUDGE_SHOTS = (
    ("The quarterly synergies were leveraged holistically across all stakeholder verticals.", "2"),
    ("We fixed it on Monday. Nobody noticed. Test the restore before you need it.", "9"),
)
_MAX_INSTRUCTION_CHARS = 600
_NUMBER = re.compile(r"\b(10|[1-9])(?:\.\d+)?\b")


def _retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError | openai.RateLimitError):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


class _Endpoint:
    def __init__(self, base_url: str, model: str, api_key: str | None, timeout_s: float) -> None:
        import openai

        self.base_url = base_url
        self.model = model
        self._client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=0
        )

    @retry(
        retry=retry_if_exception(_retryable),
        wait=wait_exponential(multiplier=0.5, max=8),
        stop=stop_after_attempt(4),
        reraise=True,
    )
    def ask(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        reply = self._client.chat.completions.create(
            model=self.model,
            messages=messages,  # type: ignore[arg-type]
            temperature=0.0,
            max_tokens=max_tokens,
            seed=0,
        )
        return (reply.choices[0].message.content or "").strip()

    def call(self, system: str, user: str, max_tokens: int, shots: Sequence[tuple[str, str]] = ()) -> str:
        """One reply to ``user`` after ``system`` and the example (user, assistant) turns ``shots``."""
        import openai

        messages = [{"role": "system", "content": system}]
        for question, answer in shots:
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": user})
        try:
            return self.ask(messages, max_tokens)
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise DependencyNotReady(f"the LLM endpoint {self.base_url} is not reachable: {exc}") from exc


class TeacherInstructions:
    """The teacher-LLM :class:`twin.domain.dataset.InstructionGenerator` (see the module docstring)."""

    name = "teacher"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        concurrency: int = 4,
        max_tokens: int = 120,
    ) -> None:
        self._endpoint = _Endpoint(base_url, model, api_key, timeout_s)
        self._concurrency = concurrency
        self._max_tokens = max_tokens
        self._fallback = OfflineInstructions()
        self._lock = threading.Lock()  # replies arrive on several threads
        self.replies = 0
        self.fallbacks = 0  # replies replaced by the offline template

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "model": self._endpoint.model, "prompt": TEACHER_PROMPT_VERSION}

    def _one(self, seed: Seed, owner: str) -> str:
        doc = seed.document
        user = (
            f"Author: {owner}\nPlatform: {doc.platform.value}\nKind: {doc.category.value}\n"
            f"Title: {doc.title}\n\nText:\n{seed.text[:6000]}"
        )
        instruction = usable_instruction(
            self._endpoint.call(_TEACHER_SYSTEM, user, max_tokens=self._max_tokens)
        )
        with self._lock:
            self.replies += 1
            if instruction is None:
                self.fallbacks += 1
        return instruction if instruction is not None else self._fallback.instructions([seed], owner)[0]

    def instructions(self, seeds: Sequence[Seed], owner: str) -> list[str]:
        with ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="teacher") as pool:
            return list(pool.map(lambda s: self._one(s, owner), seeds))


class Judge:
    """Rates generated texts against the owner's reference texts, 1-10 (mean over pairs)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_tokens: int = 8,
    ) -> None:
        self._endpoint = _Endpoint(base_url, model, api_key, timeout_s)
        self._max_tokens = max_tokens

    def rate(self, reference: str, candidate: str) -> float | None:
        reply = self._endpoint.call(
            _JUDGE_SYSTEM, judge_question(reference, candidate), max_tokens=self._max_tokens, shots=_shots()
        )
        return parse_rating(reply)

    def score(self, references: Sequence[str], candidates: Sequence[str]) -> float | None:
        """Mean rating over the pairs the judge answered with a number (None when none did)."""
        ratings = [
            r for r in (self.rate(a, b) for a, b in zip(references, candidates, strict=True)) if r is not None
        ]
        return sum(ratings) / len(ratings) if ratings else None


def usable_instruction(reply: str) -> str | None:
    """The teacher's reply as an instruction, or None when it is empty or absurdly long."""
    instruction = reply.strip().strip('"')
    return instruction if instruction and len(instruction) <= _MAX_INSTRUCTION_CHARS else None


def judge_question(reference: str, candidate: str) -> str:
    return f"Reference:\n{reference[:4000]}\n\nCandidate:\n{candidate[:4000]}\n\n{_JUDGE_QUESTION}"


def _shots() -> list[tuple[str, str]]:
    return [(judge_question(_SHOT_REFERENCE, candidate), rating) for candidate, rating in _JUDGE_SHOTS]


def parse_rating(reply: str) -> float | None:
    """The first whole number 1-10 in the judge's reply ("8", "Score: 8/10", "8."), else None."""
    match = _NUMBER.search(reply)
    return float(match.group(1)) if match else None
