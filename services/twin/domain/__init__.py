"""Pure domain code: no I/O, no frameworks (an import-linter contract enforces it)."""
