"""One walk over a streamed chunk's choices: the facts the sinks and billing read instead."""

from __future__ import annotations

import pytest

from gateway.wire.chunk import MalformedChunk, read_chunk, sent_choices


def test_a_plain_content_chunk_is_sent_as_it_is() -> None:
    data = {
        "model": "m",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": None}
        ],
    }
    chunk = read_chunk(data)
    assert (chunk.text, chunk.answer, chunk.shown, chunk.tools) == ("Hi", (0,), (0,), ())
    assert chunk.plain_text and chunk.rebuild is None and sent_choices(chunk) is data["choices"]
    assert data["choices"][0]["delta"] == {"content": "Hi"}, "the role is the sink's to send"
    assert (chunk.chars, chunk.char_events, chunk.answer_chars) == (2, 1, 2)


def test_a_finish_reason_with_content_is_held_back_but_kept_in_the_data() -> None:
    data = {"choices": [{"delta": {"content": "end"}, "finish_reason": "length"}]}
    chunk = read_chunk(data)
    assert chunk.finish == ((0, "length"),)
    assert sent_choices(chunk) == [{"index": 0, "delta": {"content": "end"}, "finish_reason": None}]
    assert data["choices"][0]["finish_reason"] == "length", "assemblies still read it"


def test_a_choice_without_finish_reason_gets_a_null_one() -> None:
    chunk = read_chunk({"choices": [{"index": 0, "delta": {"content": "x"}}]})
    assert not chunk.plain_text and chunk.text == "x"
    assert sent_choices(chunk)[0]["finish_reason"] is None


def test_several_choices_keep_only_those_with_something_to_show() -> None:
    data = {
        "choices": [
            {"index": 0, "delta": {"content": "a"}, "finish_reason": None},
            {"index": 1, "delta": {}, "finish_reason": "stop"},
            {"index": 2, "delta": {"reasoning_content": "hm"}, "finish_reason": None},
        ]
    }
    chunk = read_chunk(data)
    assert (chunk.shown, chunk.answer, chunk.finish) == ((0, 2), (0,), ((1, "stop"),))
    assert chunk.in_reasoning, "the last shown choice was reasoning"
    assert [c["index"] for c in sent_choices(chunk)] == [0, 2]
    assert (chunk.reasoning_chars, chunk.reasoning_events, chunk.answer_chars) == (2, 1, 1)


def test_tool_call_fragments_count_as_answer_and_get_a_function_object() -> None:
    call = {"index": 0, "id": "t1", "type": "function"}
    named = {"index": 0, "function": {"name": "read_file", "arguments": ""}}
    empty = {"index": 0, "function": {"arguments": ""}}
    calls = [call, named, empty]
    chunk = read_chunk({"choices": [{"index": 0, "delta": {"tool_calls": calls}}]})
    assert (chunk.answer, chunk.tools) == ((0,), (0,))
    assert call["function"] == {}
    assert chunk.chars == len("read_file")
    assert chunk.answer_chars == len("read_file") + 1, "an empty fragment still counts"


def test_odd_indexes_fall_back_to_the_position() -> None:
    chunk = read_chunk(
        {"choices": [{"index": "x", "delta": {"content": "a"}}, {"delta": {"content": "b"}}]}
    )
    assert chunk.shown == (0, 1) and chunk.text == "ab"


@pytest.mark.parametrize("data", [{}, {"choices": None}, {"choices": []}, {"choices": "x"}])
def test_no_choices_show_nothing(data: dict) -> None:
    chunk = read_chunk(data)
    assert not chunk.shown and not chunk.finish and chunk.chars == 0


def test_a_choice_that_is_not_an_object_is_malformed() -> None:
    with pytest.raises(MalformedChunk):
        read_chunk({"choices": ["text"]})
    with pytest.raises(MalformedChunk):
        read_chunk({"choices": [{"delta": {}}, 3]})
