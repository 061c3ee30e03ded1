"""Scorers of the speculative verdict, the verdict window and the speculative config keys."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from gateway.config import ConfigError, Prices, SpeculativeConfig, parse_config
from gateway.router.answer import final_number, logprob_confidence
from gateway.speculation.cost import prompt_cost_share
from gateway.speculation.verdict import (
    SCORERS,
    Answer,
    ToolCall,
    agreement,
    arguments_similarity,
    final_answer,
    levenshtein,
    token_set,
    tool_calls_similarity,
)
from gateway.speculation.window import Window
from gateway.strategies import known_names
from gateway.wire.chunk import Chunk, read_chunk


def test_levenshtein_is_the_seeds_ratio() -> None:
    assert levenshtein("abc", "abc") == 1.0
    assert levenshtein("abc", "abd") == pytest.approx(2 / 3)
    assert levenshtein("", "") == 1.0
    assert levenshtein("abc", "") == 0.0


def test_token_set_ignores_order_case_and_repetition() -> None:
    assert token_set("The cat sat", "sat cat the the") == 1.0
    assert token_set("a b c d", "a b x y") == pytest.approx(2 / 6)
    assert token_set("", "") == 1.0
    assert token_set("word", "") == 0.0


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("She makes 9 * $2 = $18 every day.", Fraction(18)),
        ("so 2 + 1/2 = 5/2 bolts\n#### 3", Fraction(3)),
        ("It costs 1,250.50 dollars", Fraction("1250.50")),
        ("the total is -4", Fraction(-4)),
        ("it is 5/2", Fraction(5, 2)),
        ("no number here", None),
    ],
)
def test_final_number(text: str, number: Fraction | None) -> None:
    assert final_number(text) == number


def test_final_answer_agreement() -> None:
    assert final_answer("... so 16 - 7 = 9 eggs, $18.", "#### 18") == 1.0
    assert final_answer("The answer is 18.0", "18") == 1.0
    assert final_answer("#### 17", "#### 18") == 0.0
    assert final_answer("no numbers", "#### 18") is None


def test_agreement_falls_back_to_levenshtein_when_final_answer_does_not_apply() -> None:
    scorer = SCORERS["final_answer"]
    assert scorer.needs_full_answer
    assert agreement(Answer("the answer is 4"), Answer("4"), scorer).method == "final_answer"
    score = agreement(Answer("yes"), Answer("yes"), scorer)
    assert score == type(score)(1.0, "levenshtein")


def test_agreement_uses_tool_calls_when_either_side_has_one() -> None:
    call = ToolCall("read_file", '{"path": "src/app.py"}')
    score = agreement(
        Answer("I'll read it", (call,)), Answer("Reading", (call,)), SCORERS["levenshtein"]
    )
    assert (score.value, score.method) == (1.0, "tool_calls")
    text_only = agreement(
        Answer("I'll read it"), Answer("I'll read it", (call,)), SCORERS["levenshtein"]
    )
    assert (text_only.value, text_only.method) == (0.0, "tool_calls")


def test_tool_calls_compare_parsed_arguments() -> None:
    a = Answer(tool_calls=(ToolCall("read_file", '{"path": "src/app.py"}'),))
    same_spacing_differs = Answer(tool_calls=(ToolCall("read_file", '{"path":"src/app.py"}'),))
    other_file = Answer(tool_calls=(ToolCall("read_file", '{"path": "src/main.py"}'),))
    other_tool = Answer(tool_calls=(ToolCall("list_files", '{"path": "src/app.py"}'),))
    assert tool_calls_similarity(a, same_spacing_differs) == 1.0
    assert tool_calls_similarity(a, other_file) < 0.9
    assert tool_calls_similarity(a, other_tool) == 0.0


def test_tool_call_similarity_is_the_least_argument() -> None:
    body = "x" * 200
    a = ToolCall("write_to_file", f'{{"path": "a.py", "content": "{body}"}}')
    b = ToolCall("write_to_file", f'{{"path": "b.py", "content": "{body}"}}')
    c = ToolCall("write_to_file", f'{{"path": "a.py", "content": "{body}y"}}')
    assert tool_calls_similarity(Answer(tool_calls=(a,)), Answer(tool_calls=(b,))) == pytest.approx(
        levenshtein("a.py", "b.py")
    )
    assert tool_calls_similarity(Answer(tool_calls=(a,)), Answer(tool_calls=(c,))) > 0.99
    assert arguments_similarity('{"n": 1}', '{"n": 2}') == 0.0
    assert arguments_similarity('{"n": [1, 2]}', '{"n": [1, 2]}') == 1.0
    assert arguments_similarity('{"a": 1}', '{"a": 1, "b": 2}') == 0.0


def test_tool_call_count_differs_only_when_the_shorter_answer_may_grow() -> None:
    first = ToolCall("read_file", '{"path": "a"}')
    second = ToolCall("list_files", '{"path": "."}')
    both = Answer(tool_calls=(first, second))
    assert tool_calls_similarity(both, Answer(tool_calls=(first,))) == 0.0
    assert tool_calls_similarity(both, Answer(tool_calls=(first,), complete=False)) == 1.0
    cut = Answer(tool_calls=(ToolCall("read_file", '{"path": "a'),), complete=False)
    assert tool_calls_similarity(Answer(tool_calls=(first,)), cut) == 1.0


def test_logprob_confidence() -> None:
    assert logprob_confidence([], 0.1) == (0.0, 0.0)
    mean, low = logprob_confidence([math.log(0.9)] * 9 + [math.log(0.1)], 0.1)
    assert mean == pytest.approx(0.82)
    assert low == pytest.approx(0.1)
    mean, low = logprob_confidence([math.log(0.5), math.log(1.0)], 0.5)
    assert (mean, low) == (pytest.approx(0.75), pytest.approx(0.5))


def chunk(content: str = "", *, reasoning: str = "", finish: str | None = None) -> Chunk:
    delta: dict = {}
    if content:
        delta["content"] = content
    if reasoning:
        delta["reasoning_content"] = reasoning
    return read_chunk({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_window_counts_answer_tokens_not_reasoning() -> None:
    window = Window(limit=3)
    window.add(chunk(reasoning="thinking hard about it"), [])
    assert window.tokens == 0 and not window.ready
    for word in ("one", " two", " six", " ten"):
        window.add(chunk(word), [-0.1])
    assert window.full and window.ready
    assert window.answer().text == "one two six"
    assert window.answer(2).text == "one two"
    assert len(window.chunks) == 5  # everything is kept for the replay
    assert window.logprobs == [-0.1] * 3
    window.finished = True
    assert not window.complete  # " ten" came after the window was full
    assert not window.answer().complete


def test_window_of_a_whole_short_answer_is_complete() -> None:
    window = Window(limit=10)
    window.add(chunk("two"), [])
    window.add(chunk(finish="stop"), [])
    window.finished = True
    assert window.complete and window.answer() == Answer("two", (), True)


def test_prompt_cost_share() -> None:
    prices = Prices(2.25, 2.75)
    small = {"messages": [{"role": "user", "content": "hi"}]}
    assert prompt_cost_share(small, prices, 500) < 0.01
    big = {"messages": [{"role": "system", "content": "x" * 80_000}, *small["messages"]]}
    share = prompt_cost_share(big, prices, 500)
    prompt = 20_000 + 1 + 2 * 4  # 80k chars / 4, "hi", message overheads
    assert share == pytest.approx(prompt * 2.25 / (prompt * 2.25 + 500 * 2.75))
    capped = prompt_cost_share({**big, "max_tokens": 50}, prices, 500)
    assert capped == pytest.approx(prompt * 2.25 / (prompt * 2.25 + 50 * 2.75))
    assert prompt_cost_share(big, Prices(0, 0), 500) == 0.0


def test_speculative_config_keys() -> None:
    cfg = parse_config(
        {
            "speculative_decoding": {
                "verify_start": "after_draft",
                "scorer": "final_answer",
                "accept_short_drafts": False,
                "tool_call_min_similarity": 0.95,
                "logprob_signal": True,
                "logprob_min_mean": 0.9,
                "logprob_min_low": 0.4,
                "logprob_low_quantile": 0.05,
                "cost_skip_ratio": 1,
                "expected_answer_tokens": 800,
            }
        },
        env={},
    ).speculative_decoding
    assert cfg == SpeculativeConfig(
        verify_start="after_draft",
        scorer="final_answer",
        accept_short_drafts=False,
        tool_call_min_similarity=0.95,
        logprob_signal=True,
        logprob_min_mean=0.9,
        logprob_min_low=0.4,
        logprob_low_quantile=0.05,
        cost_skip_ratio=1.0,
        expected_answer_tokens=800,
    )


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"verify_start": "later"}, "speculative_decoding.verify_start"),
        ({"scorer": "bleu"}, "speculative_decoding.scorer"),
        ({"logprob_min_mean": 1.5}, "speculative_decoding.logprob_min_mean"),
        ({"cost_skip_ratio": -0.1}, "speculative_decoding.cost_skip_ratio"),
        ({"accept_short_drafts": "yes"}, "speculative_decoding.accept_short_drafts"),
        ({"draft_model": "openai"}, "speculative_decoding.draft_model"),
        ({"verify_model": "local"}, "speculative_decoding.verify_model"),
    ],
)
def test_speculative_config_errors_name_the_key(section: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config(
            {"speculative_decoding": section}, source="conf.yaml", env={}, names=known_names()
        )
