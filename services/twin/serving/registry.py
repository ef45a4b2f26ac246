"""Which adapter serves: model ids, the registry alias, and local copies of registered adapters.

Model ids (``GET /v1/models``, the ``model`` field of every request):

- ``twin-<profile>``: the twin, on the alias serving follows (``champion`` by default);
- ``twin-<profile>@<alias>``: another alias (``candidate``...); ``twin-<profile>@<N>``: version N;
- the base model's name (``HuggingFaceTB/SmolLM2-135M-Instruct``): the base model, no adapter.

Each is answered in the owner's voice and grounded in their writing; only the weights differ.
Adapters come from the :class:`twin.ports.ModelRegistry` and are downloaded once into
``<cache>/<profile>/v<N>`` (a partial download is never used: it lands in a temporary folder that
is renamed when complete).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from twin.domain.generation import AdapterRef, Selector
from twin.domain.registry import ModelVersionInfo, model_name
from twin.ports import ModelRegistry

_VERSION = re.compile(r"^\d{1,9}$")
_ALIAS = re.compile(r"[A-Za-z][\w-]{0,63}")


def parse_model_id(model: str, profile: str, base_model: str, default_alias: str) -> Selector | None:
    """The selector for ``model``, or None when it names nothing this server serves."""
    if model == base_model:
        return Selector(base=True)
    name = model_name(profile)
    if model == name:
        return Selector(alias=default_alias)
    if not model.startswith(name + "@"):
        return None
    suffix = model[len(name) + 1 :]
    if _VERSION.match(suffix):
        return Selector(version=int(suffix))
    if _ALIAS.fullmatch(suffix):
        return Selector(alias=suffix)
    return None


class AdapterCache:
    """Registered adapters resolved through the registry and kept on local disk."""

    def __init__(self, registry: ModelRegistry, profile: str, base_model: str, cache_dir: Path) -> None:
        self.registry = registry
        self.profile = profile
        self.base_model = base_model
        self.cache_dir = cache_dir / profile

    def versions(self) -> list[ModelVersionInfo]:
        """Every registered version of the profile's model, oldest first."""
        return self.registry.versions(self.profile)

    def resolve(self, selector: Selector) -> ModelVersionInfo | None:
        """The registered version a selector names now (None: no such alias or version)."""
        if selector.version is not None:
            return next((v for v in self.versions() if v.version == selector.version), None)
        if selector.alias is None:
            raise ValueError("the base model has no registered version")
        return self.registry.by_alias(self.profile, selector.alias)

    def fetch(self, info: ModelVersionInfo) -> AdapterRef:
        """The version's adapter on local disk, downloaded the first time."""
        if info.base_model and info.base_model != self.base_model:
            raise ValueError(
                f"version {info.version} of {model_name(self.profile)} is tuned from {info.base_model!r}, "
                f"but this server runs {self.base_model!r}"
            )
        target = self.cache_dir / f"v{info.version}"
        if not (target / "adapter_config.json").is_file():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self.cache_dir) as tmp:
                downloaded = self.registry.download_adapter(info, Path(tmp))
                shutil.rmtree(target, ignore_errors=True)
                Path(downloaded).rename(target)
        return AdapterRef(name=f"{self.profile}-v{info.version}", version=info.version, path=str(target))
