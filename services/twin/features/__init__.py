"""Features: change events → clean → chunk → embed (on Ray) → pgvector, in both runtimes."""
