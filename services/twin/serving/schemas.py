"""The OpenAI wire format: requests as pydantic models (validated, 400 on anything malformed), the
responses and errors as OpenAI's clients expect them.

Unknown fields are ignored, as OpenAI's API does, so newer clients keep working; fields we know but
cannot honour (``n > 1``, tools, logprobs, ``echo``) are refused with a 400 that names them rather
than silently ignored. The ``twin`` object is this server's extension: in requests
(``extra_body={"twin": {...}}`` with the openai client) it picks the target platform, turns
retrieval off or asks for the sources inline; in responses it carries the citations, the model
version and the retrieved chunks. Every response body is one of these models
(:mod:`twin.serving.rendering` builds them), so the served OpenAPI document is what is sent.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from twin.domain.prompts import Target


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class TwinOptions(BaseModel):
    """The ``twin`` request extension."""

    model_config = ConfigDict(extra="forbid")

    target: Target | None = None  # what to write; detected from the last user message when unset
    retrieval: bool = True  # ground the answer in the owner's writing
    fetch_links: bool = True  # read the pages linked in the user's message
    # Also append the sources to ``content`` as a "Sources:" block, where it fits the request's
    # max_tokens and stop sequences (unset: the server's serving.inline_citations).
    inline_citations: bool | None = None


Stop = str | list[str] | None


def _check_stop(stop: Stop) -> Stop:
    if isinstance(stop, list):
        if len(stop) > 4:
            raise ValueError("stop takes at most 4 sequences")
        if any(not s for s in stop):
            raise ValueError("stop sequences must not be empty")
    elif stop == "":
        raise ValueError("stop must not be empty")
    return stop


class _Sampling(_Request):
    model: str = Field(min_length=1, max_length=256)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=1, description="One choice per request (n > 1 is not supported)")
    stop: Stop = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(default=None, max_length=256)
    logprobs: Literal[False] | None = Field(default=None, description="Not supported: only false")

    @field_validator("stop")
    @classmethod
    def _stop(cls, stop: Stop) -> Stop:
        return _check_stop(stop)

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[Any] | None = Field(default=None, max_length=0, description="Not supported")
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    twin: TwinOptions = Field(default_factory=TwinOptions)

    @model_validator(mode="after")
    def _chat_supported(self) -> ChatCompletionRequest:
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            raise ValueError("response_format other than text is not supported")
        if not any(m.role == "user" and m.text().strip() for m in self.messages):
            raise ValueError("messages must include a user message with text")
        return self

    def limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Sampling):
    # One string, possibly empty (OpenAI accepts "": generation starts from the start token), or a
    # list holding exactly one string.
    prompt: str | list[str]
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError("prompt must be one string (batches of prompts are not supported)")
        return prompt

    @model_validator(mode="after")
    def _completion_supported(self) -> CompletionRequest:
        if self.echo or self.suffix or (self.best_of not in (None, 1)):
            raise ValueError("echo, suffix and best_of are not supported")
        return self

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def limit(self) -> int | None:
        return self.max_tokens


class EmbeddingRequest(_Request):
    model: str = Field(min_length=1, max_length=256)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _texts(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if len(texts) > 2048:
            raise ValueError("input takes at most 2048 texts")
        if any(not t.strip() for t in texts):
            raise ValueError("input texts must not be empty")
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


# ----------------------------------------------------------------------------------- responses


class Citation(BaseModel):
    index: int
    title: str
    url: str
    kind: Literal["chunk", "link"]
    score: float | None = None
    document_id: str | None = None
    position: int | None = None


class LinkNote(BaseModel):
    """A link from the user's message that could not be read, and why."""

    url: str
    error: str


class TwinInfo(BaseModel):
    model_version: int | None = None  # None: the base model without an adapter
    alias: str | None = None
    target: str | None = None
    citations: list[Citation] = Field(default_factory=list)
    links: list[LinkNote] = Field(default_factory=list)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] | None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    twin: TwinInfo


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    twin: TwinInfo | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"] | None
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    twin: TwinInfo | None = None


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    # Extension: what the id resolves to.
    root: str | None = None  # the base model (the embedding model for embedding ids)
    version: int | None = None
    aliases: list[str] = Field(default_factory=list)
    kind: Literal["chat", "embedding"] = "chat"  # chat and completions, or /v1/embeddings


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ReadyStatus(BaseModel):
    """``GET /ready``: 200 once the engine has synced with the registry, 503 before."""

    ready: bool
    engine: str
    base_model: str
    model_version: int | None = None
    registry_error: str | None = None
    quantization: str | None = None  # the base model's weights as the engine runs them


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "service_unavailable"),
}


def error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object for an HTTP status."""
    fallback = ("invalid_request_error" if status < 500 else "server_error", None)
    kind, default_code = ERROR_TYPES.get(status, fallback)
    body = ErrorBody(message=message, type=kind, param=param, code=code or default_code)
    return ErrorResponse(error=body).model_dump()


class ApiError(Exception):
    """An error with an HTTP status, rendered as OpenAI's error object (:func:`error_body`)."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param, code=self.code)
