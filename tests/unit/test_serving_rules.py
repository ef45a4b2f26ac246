"""Serving's pure parts: request validation, model ids, stop sequences, prompts and citations,
query expansion, reranking and link finding."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from twin.domain.documents import Category, Platform
from twin.domain.features import RetrievalHit
from twin.domain.generation import GenerationParams, Selector, StopTrimmer
from twin.domain.links import find_links
from twin.domain.prompts import Source, Target, citations_block, detect_target, grounded_system_prompt
from twin.serving.grounding import expand_queries, mmr
from twin.serving.registry import parse_model_id
from twin.serving.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, error_body

BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"


def chat(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "twin-alice", "messages": [{"role": "user", "content": "hi"}], **fields}
    )


def test_chat_requests_are_validated() -> None:
    assert chat().limit() is None and chat(max_completion_tokens=5, max_tokens=9).limit() == 5
    assert chat(stop="x").stops() == ["x"] and chat(stop=["a", "b"]).stops() == ["a", "b"]
    parts = chat(
        messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    )
    assert parts.messages[0].text() == "ab"
    assert chat(unknown_future_field=1).model == "twin-alice"  # ignored, as OpenAI does
    for bad in (
        {"messages": []},
        {"messages": [{"role": "system", "content": "only a system prompt"}]},
        {"messages": [{"role": "tool", "content": "x"}]},
        {"n": 2},
        {"temperature": 3},
        {"top_p": 0},
        {"stop": ["a", "b", "c", "d", "e"]},
        {"stop": ""},
        {"logprobs": True},
        {"tools": [{"type": "function"}]},
        {"response_format": {"type": "json_schema"}},
        {"max_tokens": 0},
        {"twin": {"target": "poem"}},
        {"twin": {"surprise": True}},
        {"twin": {"inline_citations": "maybe"}},
    ):
        with pytest.raises(ValidationError):
            chat(**bad)


def test_vanishing_temperatures_decode_greedily() -> None:
    assert GenerationParams(max_tokens=1, temperature=0.0).greedy
    assert GenerationParams(max_tokens=1, temperature=5e-324).greedy  # would overflow logits to inf
    assert not GenerationParams(max_tokens=1, temperature=0.01).greedy


def test_completion_and_embedding_requests_are_validated() -> None:
    assert CompletionRequest(model="m", prompt=["one"]).text() == "one"
    assert (
        CompletionRequest(model="m", prompt="").text()
        == CompletionRequest(model="m", prompt=[""]).text()
        == ""
    )
    with pytest.raises(ValidationError, match="one string"):
        CompletionRequest(model="m", prompt=[])
    with pytest.raises(ValidationError):
        CompletionRequest(model="m", prompt=["one", "two"])
    with pytest.raises(ValidationError):
        CompletionRequest(model="m", prompt="x", echo=True)
    assert EmbeddingRequest(model="m", input="a").texts() == ["a"]
    with pytest.raises(ValidationError):
        EmbeddingRequest(model="m", input=["ok", " "])
    with pytest.raises(ValidationError):
        EmbeddingRequest.model_validate({"model": "m", "input": [[1, 2, 3]]})  # token arrays


def test_error_bodies_are_openais() -> None:
    assert error_body(401, "no")["error"] == {
        "message": "no",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
    assert error_body(404, "x", param="model")["error"]["code"] == "model_not_found"
    assert error_body(503, "busy")["error"]["type"] == "server_error"


def test_model_ids() -> None:
    def parse(model: str) -> Selector | None:
        return parse_model_id(model, "alice", BASE, "champion")

    assert parse(BASE) == Selector(base=True)
    assert parse("twin-alice") == Selector(alias="champion")
    assert parse("twin-alice@candidate") == Selector(alias="candidate")
    assert parse("twin-alice@7") == Selector(version=7)
    for other in ("twin-bob", "twin-bob@1", "twin-alice@", "twin-alice@../x", "gpt-4o", "twin-alicex"):
        assert parse(other) is None, other


def test_stop_sequences_are_cut_even_across_pieces() -> None:
    trimmer = StopTrimmer(("STOP",))
    out = "".join(trimmer.feed(p) for p in ["Hello wo", "rld ST", "OP and more"]) + trimmer.flush()
    assert out == "Hello world " and trimmer.stopped
    free = StopTrimmer(())
    assert free.feed("anything") == "anything"
    partial = StopTrimmer(("</end>",))
    assert "".join(partial.feed(p) for p in ["a </e", "x b"]) + partial.flush() == "a </ex b"


def test_targets_prompts_and_citations() -> None:
    assert detect_target("Write a LinkedIn post about retries") is Target.LINKEDIN
    assert detect_target("Draft a thread on X about CDC") is Target.THREAD
    assert detect_target("An article for my Substack on Kafka") is Target.ARTICLE
    assert detect_target("Show me a Python function that retries") is Target.CODE
    assert detect_target("How do I make a pipeline safe to run twice?") is Target.ANSWER
    sources = [
        Source("Idempotency", "https://a/1", "Keyed writes.", "chunk"),
        Source("Idempotency", "https://a/1", "Replace partitions.", "chunk"),
        Source("Their post", "https://b/2", "Other words.", "link"),
    ]
    system = grounded_system_prompt("Alice", Target.LINKEDIN, sources)
    assert system.startswith("You are Alice.") and "LinkedIn post" in system
    assert "[1] Idempotency (from your own writing, https://a/1)" in system and "[3] Their post" in system
    assert "other people's words" in system
    block = citations_block(sources)
    assert block.split("Sources:\n")[1].splitlines() == [
        "[1] Idempotency — https://a/1",
        "[3] Their post — https://b/2",
    ]
    assert "Nothing you have written" in grounded_system_prompt("Alice", Target.ANSWER, [])
    assert citations_block([]) == ""


def _hit(n: int) -> RetrievalHit:
    return RetrievalHit(
        uuid.UUID(int=n), 0, "alice", Category.ARTICLE, Platform.MEDIUM, f"u{n}", f"t{n}", "x", 0.5
    )


def test_query_expansion_and_mmr() -> None:
    assert expand_queries("What is CDC? And why use Kafka for it?", []) == [
        "What is CDC? And why use Kafka for it?",
        "What is CDC?",
        "And why use Kafka for it?",
    ]
    assert expand_queries("and why?", ["How do retries work"]) == ["and why?", "How do retries work and why?"]
    q = [1.0, 0.0]
    near_a, near_a2, other = [0.99, 0.141], [0.98, 0.199], [0.6, 0.8]
    chosen = mmr(q, [(_hit(1), near_a), (_hit(2), near_a2), (_hit(3), other)], k=2, lam=0.3)
    assert [h.url for h in chosen] == ["u1", "u3"]  # the near-duplicate loses to a second source


def test_links_are_found_in_messages() -> None:
    text = "Compare https://a.dev/post?x=1, and (http://b.io/p). Again: https://a.dev/post?x=1!"
    assert find_links(text, 5) == ["https://a.dev/post?x=1", "http://b.io/p"]
    assert find_links(text, 1) == ["https://a.dev/post?x=1"]
    assert find_links("no links, ftp://x.y is not one", 3) == []


def test_judge_replies_are_read_as_ratings() -> None:
    from twin.adapters.openai_llm import _NUMBER

    for reply, rating in (("7", "7"), ("I'd say 8/10.", "8"), ("10", "10"), ("Score: 3.5", "3")):
        match = _NUMBER.search(reply)
        assert match is not None and match.group(1) == rating
    assert _NUMBER.search("no idea") is None and _NUMBER.search("0") is None


def test_quantization_modes_per_device() -> None:
    from twin.adapters.vllm_engine import vllm_quantization
    from twin.domain.errors import InvalidSpec

    assert vllm_quantization("none", "cpu") is None and vllm_quantization("none", "cuda") is None
    assert vllm_quantization("fp8", "cuda") == "fp8"
    assert vllm_quantization("int4", "cuda") == "bitsandbytes"
    assert vllm_quantization("int8", "cpu") == "int8_per_channel_weight_only"
    for mode, device in (("fp8", "cpu"), ("int4", "cpu"), ("int8", "cuda")):
        with pytest.raises(InvalidSpec, match=mode):
            vllm_quantization(mode, device)
