"""The transformers chat engine: for machines where vLLM does not install. Same seam, same adapters.

One model, LoRA adapters attached with peft under their own names (``load_adapter``), switched per
request (``set_adapter``; ``disable_adapter`` for the base model). ``generate`` runs in a worker
thread and hands each new token id to a streamer; the async side decodes incrementally and cuts
stop sequences (OpenAI leaves them out of the text). Requests take turns (a lock), because the
active adapter is model state: this engine trades throughput for simplicity and is the fallback,
not the fast path. Quantisation (``int8``/``int4``) uses bitsandbytes and needs a GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from twin.adapters.vllm_engine import TokenizerPrompts, check_adapter
from twin.domain.errors import InvalidSpec
from twin.domain.generation import AdapterRef, EngineDelta, GenerationParams, StopTrimmer

Emit = Callable[[str, Any], None]


class _TokenStreamer:
    """transformers' streamer protocol (``put``/``end``): the prompt first, then one id per step."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self._emit("token", int(token))

    def end(self) -> None:
        self._emit("end", None)


class TransformersEngine(TokenizerPrompts):
    """The :class:`twin.ports.ChatEngine` on transformers + peft."""

    name = "transformers"

    def __init__(self, model_path: str, *, quantization: str = "none", threads: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if self.device == "cuda" else torch.float32}
        if quantization != "none":
            if self.device != "cuda" or quantization not in ("int8", "int4"):
                raise InvalidSpec(
                    f"serving.quantization {quantization!r} with the transformers engine needs a GPU "
                    "and is one of int8, int4 (bitsandbytes)"
                )
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_8bit=quantization == "int8", load_in_4bit=quantization == "int4"
            )
        self.quantization = None if quantization == "none" else f"bitsandbytes-{quantization}"
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        model: Any = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
        if quantization == "none":
            model = model.to(self.device)
        model.eval()
        self._base: Any = model
        self._peft: Any = None
        self._loaded: dict[str, AdapterRef] = {}
        self._lock = threading.Lock()  # one generation at a time: the active adapter is shared state
        self._eos = {
            t
            for t in (self.tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None))
            if isinstance(t, int)
        }

    async def load_adapter(self, adapter: AdapterRef) -> None:
        if adapter.name in self._loaded:
            return
        check_adapter(adapter.path, max_rank=1 << 16)
        await asyncio.to_thread(self._load, adapter)

    def _load(self, adapter: AdapterRef) -> None:
        from peft import PeftModel

        with self._lock:
            if adapter.name in self._loaded:
                return
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self._base, adapter.path, adapter_name=adapter.name)
                self._peft.eval()
            else:
                self._peft.load_adapter(adapter.path, adapter_name=adapter.name)
            self._loaded[adapter.name] = adapter

    async def unload_adapter(self, adapter: AdapterRef) -> None:
        def _unload() -> None:
            with self._lock:
                if self._loaded.pop(adapter.name, None) is not None and self._peft is not None:
                    self._peft.delete_adapter(adapter.name)

        await asyncio.to_thread(_unload)

    async def generate(
        self, prompt_ids: list[int], params: GenerationParams, adapter: AdapterRef | None, request_id: str
    ) -> AsyncIterator[EngineDelta]:
        if adapter is not None:
            await self.load_adapter(adapter)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancelled = threading.Event()

        def emit(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        threading.Thread(
            target=self._run,
            args=(prompt_ids, params, adapter, emit, cancelled),
            name=f"generate-{request_id[:8]}",
            daemon=True,
        ).start()
        trimmer = StopTrimmer(params.stop)
        ids: list[int] = []
        released = ""  # decoded text handed to the trimmer so far
        ended_on_eos = False
        try:
            while True:
                kind, value = await queue.get()
                if kind == "error":
                    raise value
                if kind == "token":
                    if value in self._eos:
                        ended_on_eos = True
                        continue
                    ids.append(value)
                    text = str(self.tokenizer.decode(ids, skip_special_tokens=True))
                    if text.endswith("\ufffd"):
                        continue  # half a multi-byte character: wait for the rest
                    out = trimmer.feed(text[len(released) :])
                    released = text
                    if trimmer.stopped:
                        yield EngineDelta(out, 1, "stop")
                        return
                    if out:
                        yield EngineDelta(out, 1)
                    continue
                if kind == "end":
                    length = len(ids) >= params.max_tokens and not ended_on_eos
                    yield EngineDelta(trimmer.flush(), 0, "length" if length else "stop")
                    return
        finally:
            cancelled.set()  # a stop sequence, a disconnect: stop generating

    def _run(
        self,
        prompt_ids: list[int],
        params: GenerationParams,
        adapter: AdapterRef | None,
        emit: Emit,
        cancelled: threading.Event,
    ) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool)

        try:
            with self._lock:
                model: Any = self._peft if self._peft is not None else self._base
                if adapter is not None:
                    model.set_adapter(adapter.name)
                    context: Any = contextlib.nullcontext()
                else:
                    context = model.disable_adapter() if self._peft is not None else contextlib.nullcontext()
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                ids = torch.tensor([prompt_ids], device=self.device)
                sample = not params.greedy
                kwargs: dict[str, Any] = {
                    "input_ids": ids,
                    "attention_mask": torch.ones_like(ids),
                    "max_new_tokens": params.max_tokens,
                    "do_sample": sample,
                    "streamer": _TokenStreamer(emit),
                    "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                    "stopping_criteria": StoppingCriteriaList([_Cancelled()]),
                }
                if sample:
                    kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
                penalty = max(params.frequency_penalty, params.presence_penalty)
                if (
                    penalty > 0
                ):  # OpenAI's additive penalties, approximated by transformers' multiplicative one
                    kwargs["repetition_penalty"] = 1.0 + penalty / 2
                with context, torch.no_grad():
                    model.generate(**kwargs)
        except Exception as exc:  # surfaced to the awaiting request
            emit("error", exc)

    async def shutdown(self) -> None:
        self.close()

    def close(self) -> None:
        self._peft = None
        self._base = None
