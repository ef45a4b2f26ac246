"""Real backing services for tests and the bootstrap script, started on demand (never at import)."""
