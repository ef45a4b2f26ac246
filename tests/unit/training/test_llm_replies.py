"""How the teacher's and the judge's replies are read (the pure part of
:mod:`twin.adapters.openai_llm`; both run against a real endpoint in the serving suite)."""

from __future__ import annotations

from twin.adapters.openai_llm import _shots, judge_question, parse_rating, usable_instruction


def test_a_teacher_reply_is_used_unless_empty_or_absurdly_long() -> None:
    assert usable_instruction(' "Write a post about retries." \n') == "Write a post about retries."
    assert usable_instruction("") is None and usable_instruction('  ""  ') is None
    assert usable_instruction("x" * 601) is None and usable_instruction("x" * 600) == "x" * 600


def test_the_judge_rating_is_the_first_number_from_1_to_10() -> None:
    for reply, rating in (("7", 7.0), ("9/10", 9.0), ("Score: 10.", 10.0), ("2. It reads", 2.0)):
        assert parse_rating(reply) == rating, reply
    assert parse_rating("The pager went off") is None and parse_rating("0") is None


def test_the_judge_sees_two_worked_examples_in_the_question_format() -> None:
    shots = _shots()
    assert [rating for _, rating in shots] == ["2", "9"]  # both ends of the scale
    question = judge_question("ref", "cand")
    assert all(q.endswith(question.rsplit("\n\n", 1)[-1]) for q, _ in shots)
    assert question.startswith("Reference:\nref\n\nCandidate:\ncand\n\n")
