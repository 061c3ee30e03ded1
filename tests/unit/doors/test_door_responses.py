"""The Responses door's translator, without sockets: Codex requests into the internal chat
request, and internal chunks into Responses events, checked byte by byte."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from responses_transcripts import (
    ARGUMENTS,
    CALL_ID,
    DEVELOPER,
    ENVIRONMENT,
    HEADERS,
    INSTRUCTIONS,
    PROMPT,
    THREAD,
    first_turn,
    parse_events,
    second_turn,
)

from gateway.doors.responses.decode import _LOGGED, ResponsesContext, decode
from gateway.doors.responses.encode import ResponseEvents, output_of, usage_of
from gateway.doors.responses.errors import code_of, error_body, failed_error
from gateway.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    BadRequest,
    BudgetExhausted,
    RateLimited,
    UpstreamHTTPError,
    UpstreamStreamError,
)
from gateway.wire.validation import validate_chat_request


def test_first_codex_turn_becomes_one_chat_request(caplog: pytest.LogCaptureFixture) -> None:
    _LOGGED.clear()
    with caplog.at_level(logging.INFO, logger="gateway.doors.responses"):
        decoded = decode(first_turn(), HEADERS)
        decode(first_turn(), HEADERS)
    body = decoded.body
    validate_chat_request(body, max_messages=1000)
    assert body["messages"] == [
        {"role": "system", "content": f"{INSTRUCTIONS}\n\n{DEVELOPER}"},
        {"role": "user", "content": f"{ENVIRONMENT}\n\n{PROMPT}"},
    ]
    assert [t["function"]["name"] for t in body["tools"]] == [
        "exec_command",
        "write_stdin",
        "view_image",
    ]
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "exec_command",
            "description": first_turn()["tools"][0]["description"],
            "parameters": first_turn()["tools"][0]["parameters"],
            "strict": False,
        },
    }
    assert body["tool_choice"] == "auto"
    assert body["parallel_tool_calls"] is True
    assert body["model"] == "glm-4.7"
    # Responses-only fields never reach an upstream.
    for key in ("input", "instructions", "store", "include", "prompt_cache_key", "reasoning"):
        assert key not in body
    assert decoded.stream is True
    assert decoded.conversation_id == THREAD
    assert decoded.model == "glm-4.7"
    context = decoded.context
    assert isinstance(context, ResponsesContext)
    assert context.dropped_tools == ["namespace", "web_search"]
    assert context.thinking is None  # summary only: the gateway's control decides
    # Logged once at INFO (Codex sends them on every turn), naming the types.
    (record,) = [r for r in caplog.records if "dropped tool types" in r.getMessage()]
    assert "namespace" in record.getMessage() and "web_search" in record.getMessage()


def test_tool_round_trip_turn() -> None:
    body = decode(second_turn(), HEADERS).body
    validate_chat_request(body, max_messages=1000)
    assert body["messages"][2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": CALL_ID,
                    "type": "function",
                    "function": {"name": "exec_command", "arguments": ARGUMENTS},
                }
            ],
        },
        {"role": "tool", "tool_call_id": CALL_ID, "content": second_turn()["input"][-1]["output"]},
    ]


def test_reasoning_items_are_dropped_so_the_prompt_stays_stable() -> None:
    with_reasoning = decode(second_turn(), HEADERS).body
    body = second_turn()
    body["input"] = [item for item in body["input"] if item["type"] != "reasoning"]
    assert decode(body, HEADERS).body == with_reasoning


def test_assistant_text_then_parallel_calls_merge_into_one_turn() -> None:
    body = {
        "input": [
            {"role": "user", "content": "go"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Running both."}],
            },
            {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "b", "name": "g", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "a", "output": "A"},
            {
                "type": "function_call_output",
                "call_id": "b",
                "output": [
                    {"type": "input_text", "text": "B"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                ],
            },
            {"type": "message", "role": "developer", "content": "mid-conversation note"},
        ]
    }
    messages = decode(body, {}).body["messages"]
    assert messages == [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": "Running both.",
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "A"},
        {"role": "tool", "tool_call_id": "b", "content": "B"},
        # Images a tool returned follow the tool turn as a user message (chat tool messages
        # carry text only).
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
        },
        {"role": "system", "content": "mid-conversation note"},
    ]


def test_string_input_and_images() -> None:
    assert decode({"input": "hi"}, {}).body == {"messages": [{"role": "user", "content": "hi"}]}
    body = {
        "input": [
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is this"},
                    {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
                ],
            }
        ]
    }
    assert decode(body, {}).body["messages"][0]["content"] == [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
    ]


@pytest.mark.parametrize(
    ("effort", "thinking"),
    [(None, None), ("none", "off"), ("minimal", "off"), ("low", "default"), ("high", "default")],
)
def test_reasoning_effort_maps_to_the_thinking_control(
    effort: str | None, thinking: str | None
) -> None:
    reasoning: dict[str, Any] = {"summary": "auto"}
    if effort is not None:
        reasoning["effort"] = effort
    decoded = decode({"input": "hi", "reasoning": reasoning}, {})
    assert decoded.context.thinking == thinking
    assert decoded.thinking == thinking
    assert "reasoning" not in decoded.body and "reasoning_effort" not in decoded.body


def test_limits_sampling_tool_choice_and_text_format() -> None:
    decoded = decode(
        {
            "input": "hi",
            "max_output_tokens": 64,
            "temperature": 0.2,
            "top_p": 0.9,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {}, "strict": True}},
        },
        {},
    )
    body = decoded.body
    assert body["max_tokens"] == 64
    assert (body["temperature"], body["top_p"]) == (0.2, 0.9)
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {}, "strict": True},
    }
    validate_chat_request(body, max_messages=10)


def test_no_tools_left_means_no_tool_fields() -> None:
    body = decode(
        {"input": "hi", "tools": [{"type": "web_search"}], "tool_choice": "auto"}, {}
    ).body
    assert "tools" not in body and "tool_choice" not in body


def test_conversation_id_from_header_else_prompt_cache_key() -> None:
    assert decode({"input": "x", "prompt_cache_key": "k"}, {"session-id": "s"}).conversation_id == (
        "s"
    )
    assert decode({"input": "x", "prompt_cache_key": "k"}, {}).conversation_id == "k"
    assert decode({"input": "x"}, {}).conversation_id is None


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id", "stores no"),
        ({"input": "x", "conversation": "conv_1"}, "conversation", "stores no"),
        ({"input": "x", "background": True}, "background", "stores none"),
        ({"input": "x", "tools": [{"type": "file_search"}]}, "tools[0].type", "'file_search'"),
        ({"input": "x", "tools": [{"type": "custom", "name": "p"}]}, "tools[0].type", "'custom'"),
        ({"input": [{"type": "item_reference", "id": "m"}]}, "input[0].type", "item_reference"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
            "input_file",
        ),
        ({}, "input", "required"),
        ({"input": 3}, "input", "string or an array"),
        ({"input": []}, "input", "no message"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role", "robot"),
        ({"input": [{"role": ["user"], "content": "x"}]}, "input[0].role", "one of"),
        ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id", "string"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens", "at least 1"),
        ({"input": "x", "temperature": "hot"}, "temperature", "number"),
        ({"input": "x", "reasoning": {"effort": "max"}}, "reasoning.effort", "one of"),
        ({"input": "x", "tools": [{"type": "function"}]}, "tools[0].name", "required"),
        ({"input": "x", "text": {"format": {"type": "xml"}}}, "text.format.type", "json_schema"),
    ],
)
def test_refusals_name_the_field(body: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        decode(body, {})
    assert caught.value.status == 400
    assert caught.value.param == param
    assert words in caught.value.message


def _events(context: ResponsesContext | None = None) -> ResponseEvents:
    return ResponseEvents("resp_abc", context or ResponsesContext(model="glm-4.7"))


def test_text_answer_event_order_and_bytes() -> None:
    events = _events()
    raw = events.start() + events.text("Hel") + events.text("lo") + events.finish()
    raw += events.completed({"prompt_tokens": 7, "completion_tokens": 2}, "stop", {"x": 1})
    parsed = parse_events(raw)
    assert [name for name, _ in parsed] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [data["sequence_number"] for _, data in parsed] == list(range(10))
    # The fast path's hand-built delta is byte-identical to a generic event.
    assert (
        raw.count(
            b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
            b'"item_id":"msg_abc0","output_index":0,"content_index":0,"delta":"Hel","logprobs":[],'
            b'"sequence_number":4}\n\n'
        )
        == 1
    )
    created = parsed[0][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    assert created["id"] == "resp_abc" and created["object"] == "response"
    done = parsed[8][1]["item"]
    assert done == {
        "id": "msg_abc0",
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
    }
    final = parsed[9][1]["response"]
    assert final["status"] == "completed" and final["output"] == [done]
    assert final["usage"] == {
        "input_tokens": 7,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 9,
    }
    assert final["x"] == 1  # the gateway's metadata rides along
    assert final["store"] is False


def test_reasoning_then_parallel_tool_calls() -> None:
    events = _events()
    raw = events.start()
    raw += events.delta({"reasoning_content": "Think"})
    raw += events.delta({"reasoning_content": "ing."})
    raw += events.delta(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "exec_command", "arguments": ""},
                }
            ]
        }
    )
    raw += events.delta({"tool_calls": [{"index": 0, "function": {"arguments": '{"cmd":'}}]})
    raw += events.delta(
        {"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "f", "arguments": "{}"}}]}
    )
    raw += events.delta({"tool_calls": [{"index": 0, "function": {"arguments": '"ls"}'}}]})
    raw += events.finish()
    raw += events.completed(
        {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 8},
            "completion_tokens_details": {"reasoning_tokens": 3},
        },
        "tool_calls",
        {},
    )
    parsed = parse_events(raw)
    assert [(name, data.get("output_index")) for name, data in parsed] == [
        ("response.created", None),
        ("response.in_progress", None),
        ("response.output_item.added", 0),
        ("response.content_part.added", 0),
        ("response.reasoning_text.delta", 0),
        ("response.reasoning_text.delta", 0),
        ("response.reasoning_text.done", 0),
        ("response.content_part.done", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.function_call_arguments.delta", 1),
        ("response.output_item.added", 2),
        ("response.function_call_arguments.delta", 2),
        ("response.function_call_arguments.delta", 1),
        ("response.function_call_arguments.done", 1),
        ("response.output_item.done", 1),
        ("response.function_call_arguments.done", 2),
        ("response.output_item.done", 2),
        ("response.completed", None),
    ]
    reasoning = parsed[8][1]["item"]
    assert reasoning["type"] == "reasoning" and reasoning["summary"] == []
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Thinking."}]
    added = parsed[9][1]["item"]
    assert added["status"] == "in_progress" and added["arguments"] == ""
    assert added["call_id"] == "call_1" and added["name"] == "exec_command"
    call = parsed[15][1]["item"]
    assert call == {
        "id": "fc_abc1",
        "type": "function_call",
        "status": "completed",
        "call_id": "call_1",
        "name": "exec_command",
        "arguments": '{"cmd":"ls"}',
    }
    assert parsed[14][1]["arguments"] == '{"cmd":"ls"}'
    usage = parsed[-1][1]["response"]["usage"]
    assert usage["input_tokens_details"] == {"cached_tokens": 8}
    assert usage["output_tokens_details"] == {"reasoning_tokens": 3}
    assert [item["type"] for item in parsed[-1][1]["response"]["output"]] == [
        "reasoning",
        "function_call",
        "function_call",
    ]


def test_text_after_a_call_follows_it_once_it_closed() -> None:
    """The text waits (the call's fragments may resume after it) and goes out after the call's
    item is done, at the end."""
    events = _events()
    raw = events.delta({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]})
    assert events.text("done") == b""
    raw += events.finish()
    names = [name for name, _ in parse_events(raw)]
    assert names[:3] == [
        "response.output_item.added",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert names[3] == "response.output_item.added"


def test_a_call_without_an_id_gets_one() -> None:
    events = _events()
    raw = events.delta({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]})
    item = parse_events(raw)[0][1]["item"]
    assert item["call_id"].startswith("call_") and len(item["call_id"]) > 8


@pytest.mark.parametrize(
    ("reason", "event", "details"),
    [
        ("length", "response.incomplete", {"reason": "max_output_tokens"}),
        ("content_filter", "response.incomplete", {"reason": "content_filter"}),
        ("stop", "response.completed", None),
        (None, "response.completed", None),
    ],
)
def test_finish_reason_decides_the_final_event(
    reason: str | None, event: str, details: dict[str, str] | None
) -> None:
    events = _events()
    raw = events.text("x") + events.finish() + events.completed({}, reason, {})
    name, data = parse_events(raw)[-1]
    assert name == event
    assert data["response"]["incomplete_details"] == details


def test_failed_event_carries_a_codex_code() -> None:
    events = _events()
    raw = events.text("x") + events.failed(failed_error(UpstreamStreamError("local", {})))
    name, data = parse_events(raw)[-1]
    assert name == "response.failed"
    assert data["response"]["status"] == "failed"
    assert data["response"]["error"]["code"] == "upstream_error"
    assert data["response"]["error"]["message"]


def test_non_stream_output_items() -> None:
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert [i["type"] for i in output_of("why", "", calls, "t")] == ["reasoning", "function_call"]
    assert [i["type"] for i in output_of("", "", [], "t")] == ["message"]  # never empty
    unnamed = [{"function": {"name": "f", "arguments": "{}"}}] * 2
    ids = [i["call_id"] for i in output_of("", "", unnamed, "t")]
    assert len(set(ids)) == 2, "calls without an id still get distinct call_ids"
    assert usage_of({"prompt_tokens": True})["input_tokens"] == 0


def test_error_codes_codex_acts_on() -> None:
    overflow = UpstreamHTTPError(
        "local",
        400,
        {"message": "request exceeds the context size", "type": "exceed_context_size_error"},
        fallback_ok=True,
    )
    assert code_of(overflow) == "exceed_context_size_error"  # untagged: its own type
    overflow.condition = CONTEXT_LENGTH_EXCEEDED  # as the upstream's module tags it
    assert code_of(overflow) == "context_length_exceeded"
    cerebras = UpstreamHTTPError(
        "cerebras",
        400,
        {"message": "Please reduce the length of the messages or completion."},
        fallback_ok=False,
    )
    cerebras.condition = CONTEXT_LENGTH_EXCEEDED
    assert code_of(cerebras) == "context_length_exceeded"
    assert code_of(BudgetExhausted("spent")) == "insufficient_quota"
    limited = RateLimited("busy", retry_after=2.5, should_retry=True)
    assert code_of(limited) == "rate_limit_exceeded"
    # Codex finds the delay in the message ("try again in N s").
    assert failed_error(limited)["message"] == "busy Please try again in 2.5s."
    body = error_body(BadRequest("bad", param="input", code="invalid_value"))
    assert body == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "param": "input",
            "code": "invalid_value",
        }
    }


def test_echoed_fields_never_carry_what_cannot_be_written_back() -> None:
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(300):
        deep = {"a": deep}
    decoded = decode(
        {"input": "x", "metadata": {"a": "b", "c": deep}, "reasoning": {"summary": deep}}, {}
    )
    assert decoded.context.metadata == {"a": "b"}


def test_the_decoded_body_passes_the_seams_validation() -> None:
    with pytest.raises(BadRequest, match="'input' has 3 items; the limit is 2"):
        decode({"input": ["a", "b", "c"]}, {}, max_messages=2)
    decoded = decode({"input": "hi", "instructions": "be brief"}, {}, max_messages=1)
    validate_chat_request(decoded.body, max_messages=2)


def test_a_call_resumed_after_text_stays_one_item() -> None:
    """Text between two fragments of one call waits until the calls close: the call is one
    item with all its arguments, and the text follows it."""
    events = ResponseEvents("resp_x", ResponsesContext(model="m"))

    def call(arguments: str, name: str | None = None) -> dict[str, Any]:
        fn: dict[str, Any] = {"arguments": arguments}
        if name is not None:
            fn["name"] = name
        return {"tool_calls": [{"index": 0, "id": "a" if name else None, "function": fn}]}

    raw = b"".join(events.delta(d) for d in (call('{"a"', "f"), {"content": "hm"}, call(":1}")))
    raw += events.finish()
    assert [(i["type"], i.get("arguments"), i.get("call_id")) for i in events.items] == [
        ("function_call", '{"a":1}', "a"),
        ("message", None, None),
    ]
    assert events.items[1]["content"][0]["text"] == "hm"
    assert raw.count(b"event: response.output_item.added") == 2
    assert raw.count(b"event: response.output_item.done") == 2
