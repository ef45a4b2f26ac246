"""Serve: the OpenAI-compatible endpoint on Ray Serve, grounded in the owner's writing."""
