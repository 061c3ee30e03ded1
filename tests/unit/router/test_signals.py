"""Agent-loop signals read any client history without failing: the history is not validated
as deep as `tool_calls`, and a request must never fail for what its history holds."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from text_strategies import any_case

from gateway.router import signals
from gateway.router.signals import detect

json_value = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["assistant", "tool", "user", "function"])},
    optional={"content": json_value, "tool_calls": json_value, "tool_call_id": json_value},
)


@pytest.mark.parametrize(
    "tool_calls", [1.5, "call", {"id": "a"}, [1, None], [{"id": ["unhashable"]}], [{"id": {}}]]
)
def test_odd_tool_calls_are_no_signal_and_no_crash(tool_calls: Any) -> None:
    history = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": tool_calls},
        {"role": "tool", "tool_call_id": "a", "content": "Error: unknown tool 'x'"},
    ]
    signal = detect(history)
    assert signal is None or signal.kind == "unknown_tool"


def test_a_tool_error_still_counts_when_the_ids_match() -> None:
    call = {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    history = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "a", "content": "Error: unknown tool 'f'"},
    ]
    signal = detect(history)
    assert signal is not None and signal.kind == "unknown_tool"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(history=st.lists(message, max_size=5))
def test_any_history_is_read_without_an_error(history: list[dict[str, Any]]) -> None:
    detect(history)


@pytest.mark.parametrize("tool_call_id", [["a"], {"a": 1}, 1, None])
def test_a_tool_result_with_an_odd_id_is_no_signal_and_no_crash(tool_call_id: Any) -> None:
    """The tool message's `tool_call_id` is not validated either: a list or an object there
    (unhashable) must not fail the request with a TypeError."""
    call = {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    history = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": tool_call_id, "content": "Error: unknown tool 'f'"},
    ]
    assert detect(history) is None


_RETRY_PHRASES = [
    "[ERROR] You did not use a tool",
    "Please retry with a tool use",
    "You seem to be having trouble proceeding",
    "consecutive mistakes",
    "your previous response was not",
    "your previous response did not",
    "Invalid response format",
    "tool call malformed",
    "tool call was invalid",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            any_case(_RETRY_PHRASES),
            any_case(sorted({w for p in _RETRY_PHRASES for w in p.split()})),
            st.sampled_from([" ", "  ", "\n", "[", "]", "\u212a", "\u017f", "\u0130", "\u0131"]),
            st.text(max_size=3),
        ),
        max_size=40,
    ).map("".join)
)
def test_the_client_retry_lookahead_finds_what_the_phrases_find(text: str) -> None:
    """The first-letter lookahead only skips positions no phrase can start at, in any text
    (case folding beyond ASCII included)."""
    plain = re.compile(signals.CLIENT_RETRY_PHRASES, re.I).search(text)
    fast = signals._CLIENT_RETRY.search(text)
    assert (fast and fast.span()) == (plain and plain.span())


def test_the_client_retry_message_is_found_in_any_case() -> None:
    for text in (
        "[error] YOU DID NOT USE A TOOL",
        "x\nPlease Retry With A Tool Use",
        "tool call was MALFORMED",
    ):
        assert signals._CLIENT_RETRY.search(text) is not None
