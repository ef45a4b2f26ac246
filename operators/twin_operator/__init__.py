"""The TwinProfile operator (kopf): reconciles each TwinProfile into Kubernetes objects.

A package of its own beside ``services/twin``. Its import contract is in force before its code:
it may import the domain (``twin.domain``: the spec and status models, the pure policies), the
settings, the ports and the composition root (``twin.wiring``, to build the ports it observes the
stores through), never an adapter module directly, a pipeline or the CLI (pyproject.toml's
import-linter contracts; docs/architecture.md).
"""
