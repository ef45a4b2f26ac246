"""Prompts shared by training and serving, so the adapter is asked at serving time what it learned.

The persona system prompt is the same in both; serving adds the retrieved context and the target
platform's instructions after it.
"""

from __future__ import annotations


def persona(owner: str) -> str:
    """The system prompt every training sample and every served conversation starts with."""
    return f"You are {owner}. Write as {owner} writes: first person, in their own voice, style and opinions."


def training_messages(owner: str, instruction: str, response: str | None = None) -> list[dict[str, str]]:
    """Chat messages of one sample: persona, the instruction, and (for training) the owner's text."""
    messages = [{"role": "system", "content": persona(owner)}, {"role": "user", "content": instruction}]
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return messages
