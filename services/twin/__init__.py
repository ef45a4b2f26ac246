"""LLM Twin: turn a person's public writing into an AI twin that writes in their voice.

The package is laid out by ARCHITECTURE.md: ``domain`` (pure), ``ports`` (the Protocols at
each expensive seam), ``adapters`` (one module per technology), and one package per pipeline.
Importing any module connects to nothing.
"""

__version__ = "0.1.0"
