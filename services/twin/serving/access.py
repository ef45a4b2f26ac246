"""Who may ask and what they ask for: bearer keys, model ids, limits, and the engine request.

Keys are compared in constant time against every configured key (no early exit a timer could
see); ``auth: none`` turns them off for a machine nobody else can reach. A model id becomes a
:class:`~twin.domain.generation.Selector` (:func:`twin.serving.registry.parse_model_id`), and an
OpenAI request's sampling fields become :class:`~twin.domain.generation.GenerationParams`, with
the server's defaults and limits applied. Every refusal is an
:class:`~twin.serving.schemas.ApiError` (401, 404, 400).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from twin.domain.errors import InvalidSpec
from twin.domain.generation import GenerationParams, Selector
from twin.domain.profile import TwinProfile
from twin.serving.registry import parse_model_id
from twin.serving.schemas import ApiError, ChatCompletionRequest, CompletionRequest
from twin.settings import ServingSettings, env_name

NO_KEYS = (
    f"no API keys: set {env_name('serving', 'api_keys')} (a JSON list) or "
    f"{env_name('serving', 'api_keys_file')}, or {env_name('serving', 'auth')}=none on a machine nobody "
    "else can reach"
)


class Access:
    def __init__(self, profile: TwinProfile, config: ServingSettings, keys: Sequence[str]) -> None:
        self.profile = profile.name
        self.base_model = profile.spec.base_model
        self.config = config
        self._keys = [k.encode() for k in keys if k]
        if config.auth == "keys" and not self._keys:
            raise InvalidSpec(NO_KEYS)

    def authenticate(self, authorization: str | None) -> None:
        """Return when ``authorization`` (the HTTP header) carries a key of this endpoint."""
        if self.config.auth == "none":
            return
        scheme, _, token = (authorization or "").partition(" ")
        supplied = token.strip().encode()
        ok = False
        for key in self._keys:  # every key, always: the time taken says nothing about which matched
            ok |= hmac.compare_digest(supplied, key)
        if scheme.lower() != "bearer" or not supplied or not ok:
            raise ApiError(401, "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.")

    def selector(self, model: str) -> Selector:
        selector = parse_model_id(model, self.profile, self.base_model, self.config.alias)
        if selector is None:
            raise ApiError(
                404, f"The model {model!r} does not exist or you do not have access to it.", param="model"
            )
        return selector

    def max_tokens(self, asked: int | None) -> int:
        limit = self.config.max_tokens_limit
        if asked is not None and asked > limit:
            raise ApiError(
                400, f"max_tokens is {asked}; this server allows at most {limit}", param="max_tokens"
            )
        return asked or self.config.default_max_tokens

    def params(self, req: ChatCompletionRequest | CompletionRequest) -> GenerationParams:
        return GenerationParams(
            max_tokens=self.max_tokens(req.limit()),
            temperature=self.config.default_temperature if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            stop=tuple(req.stops()),
            seed=req.seed,
            presence_penalty=req.presence_penalty,
            frequency_penalty=req.frequency_penalty,
        )

    def resolve(self, req: ChatCompletionRequest | CompletionRequest) -> tuple[Selector, GenerationParams]:
        """The weights and the sampling a generation request asks for (404 or 400 when it cannot)."""
        return self.selector(req.model), self.params(req)
