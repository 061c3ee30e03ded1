"""The Anthropic door's translator, without sockets: requests decoded on recorded Claude Code
transcripts, internal streams encoded into Messages events checked byte by byte, and errors."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from anthropic_support import check_grammar, parse_events, transcript

from gateway.doors.anthropic.decode import DecodeOptions, conversation_id, strip_billing
from gateway.doors.anthropic.door import MessagesDoor
from gateway.doors.anthropic.encode import MESSAGE_STOP, StreamEncoder, message_start, usage_of
from gateway.doors.anthropic.errors import error_event, error_response
from gateway.doors.anthropic.stop import StopMatcher
from gateway.errors import (
    CONTEXT_LENGTH_EXCEEDED,
    BadRequest,
    BudgetExhausted,
    GatewayError,
    NoUpstreamAvailable,
    RateLimited,
    UpstreamHTTPError,
)
from gateway.wire.chunk import read_chunk

DOOR = MessagesDoor(DecodeOptions())


def decode(body: dict[str, Any], headers: dict[str, str] | None = None, door: MessagesDoor = DOOR):
    return door.decode(body, headers or {})


def test_claude_code_first_turn() -> None:
    t = transcript("claude_code_first_turn")
    decoded = decode(t["body"], t["headers"])
    body = decoded.body
    assert decoded.stream is True and decoded.include_usage is True
    assert decoded.model == "claude-sonnet-4-5-20250929"
    assert decoded.thinking is None  # enabled: the gateway's routing decides
    assert decoded.conversation_id == "claude-code:5f1c9a3e-2b7d-4c8e-9f10-0a1b2c3d4e5f"
    system = body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("You are Claude Code")
    assert "billing" not in system["content"]
    assert body["messages"][1]["role"] == "user"
    assert [p["type"] for p in body["messages"][1]["content"]] == ["text", "text"]
    assert body["max_tokens"] == 32000
    for key in ("thinking", "metadata", "context_management", "system", "stop", "top_k"):
        assert key not in body
    assert [t["function"]["name"] for t in body["tools"]] == ["Bash", "Write", "Read"]
    write = body["tools"][1]["function"]
    assert write["parameters"]["required"] == ["file_path", "content"]
    assert "cache_control" not in orjson.dumps(body).decode()
    assert decoded.context.thinking_shown is False  # display: omitted


def test_billing_line_dropped_so_two_prompts_share_their_system_prompt() -> None:
    first = decode(transcript("claude_code_first_turn")["body"]).body
    second = decode(transcript("claude_code_tool_round_trip")["body"]).body
    assert first["messages"][0] == second["messages"][0]
    keep = MessagesDoor(DecodeOptions(strip_billing_header=False))
    kept_first = decode(transcript("claude_code_first_turn")["body"], door=keep).body
    kept_second = decode(transcript("claude_code_tool_round_trip")["body"], door=keep).body
    assert kept_first["messages"][0]["content"].startswith("x-anthropic-billing-header:")
    assert kept_first["messages"][0] != kept_second["messages"][0]


def test_strip_billing_forms() -> None:
    assert (
        strip_billing("x-anthropic-billing-header: cc_version=2.1.332.573; cc_entrypoint=cli;")
        == ""
    )
    inline = (
        "x-anthropic-billing-header: cc_version=2.1.101.e51; cc_entrypoint=cli; cch=a5145;You are"
    )
    assert strip_billing(inline) == "You are"
    assert strip_billing("You are Claude Code") == "You are Claude Code"


def test_tool_round_trip_history() -> None:
    messages = decode(transcript("claude_code_tool_round_trip")["body"]).body["messages"]
    roles = [m["role"] for m in messages]
    assert roles == ["system", "user", "assistant", "tool", "tool", "user"]
    assistant = messages[2]
    assert assistant["content"] == "I'll write the file."
    assert assistant["reasoning_content"] == "The user wants a file."
    calls = assistant["tool_calls"]
    assert [c["id"] for c in calls] == ["toolu_01A", "call_02B"]  # byte-exact
    assert orjson.loads(calls[0]["function"]["arguments"]) == {
        "file_path": "/tmp/hello.txt",
        "content": "hello",
    }
    # tool results directly after the calls, in order; the failed one says so
    assert messages[3] == {
        "role": "tool",
        "tool_call_id": "toolu_01A",
        "content": "File created successfully at: /tmp/hello.txt",
    }
    assert messages[4]["tool_call_id"] == "call_02B"
    assert messages[4]["content"] == "Error: cat: permission denied"
    # the rest of the turn after them: its text, the result's image, the mid-conversation
    # system message and the next user turn, as one user message
    last = messages[5]["content"]
    assert [p["type"] for p in last] == ["text", "image_url", "text", "text"]
    assert last[1]["image_url"]["url"] == "data:image/png;base64,iVBORw0KGgo="
    assert last[2]["text"] == "The user changed the working directory."
    assert last[3]["text"] == "Now say done."


def test_system_as_string_and_blocks_and_leading_system_message() -> None:
    base = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    as_string = decode({**base, "system": "Be brief."}).body["messages"][0]
    assert as_string == {"role": "system", "content": "Be brief."}
    blocks = [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}]
    assert decode({**base, "system": blocks}).body["messages"][0]["content"] == "A\n\nB"
    leading = {**base, "messages": [{"role": "system", "content": "S"}, *base["messages"]]}
    assert decode(leading).body["messages"][0] == {"role": "system", "content": "S"}
    with pytest.raises(BadRequest, match="system"):
        decode({**base, "system": [{"type": "image"}]})


def test_images_base64_and_url() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"},
                    },
                    {"type": "text", "text": "what is this?"},
                ],
            }
        ],
    }
    parts = decode(body).body["messages"][0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    assert parts[1]["image_url"]["url"] == "data:image/jpeg;base64,QUJD"


@pytest.mark.parametrize(
    "kind",
    ["web_search_20250305", "bash_20250124", "text_editor_20250728", "code_execution_20250825"],
)
def test_server_tools_refused_naming_their_type(kind: str) -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [
            {"name": "Read", "input_schema": {"type": "object"}},
            {"type": kind, "name": "x"},
        ],
    }
    with pytest.raises(BadRequest, match=kind) as caught:
        decode(body)
    assert "tools[1]" in caught.value.message
    custom = copy.deepcopy(body)
    custom["tools"][1] = {"type": "custom", "name": "x", "input_schema": {"type": "object"}}
    assert len(decode(custom).body["tools"]) == 2


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        (
            {"type": "tool", "name": "Read", "disable_parallel_tool_use": True},
            {"type": "function", "function": {"name": "Read"}},
            False,
        ),
    ],
)
def test_tool_choice(choice: dict[str, Any], expected: Any, parallel: bool | None) -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "Read", "input_schema": {"type": "object"}}],
        "tool_choice": choice,
    }
    decoded = decode(body).body
    assert decoded["tool_choice"] == expected
    assert decoded.get("parallel_tool_calls") == parallel


@pytest.mark.parametrize(
    ("thinking", "mode"),
    [
        ({"type": "enabled", "budget_tokens": 2048}, None),
        ({"type": "adaptive"}, None),
        ({"type": "disabled"}, "off"),
        (None, None),
    ],
)
def test_thinking_mapped_to_the_gateways_control(thinking: Any, mode: str | None) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "q"}],
    }
    if thinking is not None:
        body["thinking"] = thinking
    decoded = decode(body)
    assert decoded.thinking == mode
    assert "thinking" not in decoded.body and "reasoning_effort" not in decoded.body


def test_stop_sequences_matched_by_the_door_not_sent_upstream() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "stop_sequences": ["END", "\n\nHuman:"],
        "messages": [{"role": "user", "content": "q"}],
    }
    decoded = decode(body)
    assert "stop" not in decoded.body
    assert decoded.context.stop_sequences == ("END", "\n\nHuman:")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"model": None}, "model"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "9"}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "video"),
        ({"thinking": {"type": "sometimes"}}, "thinking"),
        ({"tool_choice": {"type": "any"}}, "tool_choice"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"temperature": "hot"}, "temperature"),
        ({"stream": "yes"}, "stream"),
    ],
)
def test_malformed_requests_are_400_naming_the_field(change: dict[str, Any], words: str) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    body.update(change)
    with pytest.raises(BadRequest, match=words):
        decode(body)


def test_conversation_id_sources() -> None:
    body = {"metadata": {"user_id": '{"device_id": "d", "session_id": "abc-123-def"}'}}
    assert conversation_id(body, {}) == "claude-code:abc-123-def"
    legacy = {"metadata": {"user_id": "user_0a1b_account_1234_session_9f8e7d6c-aaaa-bbbb"}}
    assert conversation_id(legacy, {}) == "claude-code:9f8e7d6c-aaaa-bbbb"
    headers = {"X-Claude-Code-Session-Id": "sess-1"}
    assert conversation_id(body, headers) == "claude-code:sess-1"
    assert conversation_id(body, {"x-conversation-id": "mine"}) is None  # read by learning
    assert conversation_id({"metadata": {"user_id": "not json {"}}, {}) is None


def encode(
    name: str,
    *,
    stop_sequences: tuple[str, ...] = (),
    thinking_shown: bool = True,
    finish_override: str | None = None,
) -> bytes:
    """The whole event stream the door writes for a recorded upstream stream."""
    decoded = decode(
        {
            "model": "claude-x",
            "max_tokens": 50,
            "stream": True,
            "stop_sequences": list(stop_sequences),
            "thinking": {
                "type": "enabled",
                "display": "summarized" if thinking_shown else "omitted",
            },
            "messages": [{"role": "user", "content": "q"}],
        }
    )
    encoder = StreamEncoder(decoded.context)
    out = message_start("msg_1", "claude-x", 42)
    finish = None
    for data in transcript("upstream_streams")[name]:
        chunk = read_chunk(data)
        for index, reason in chunk.finish:
            if index == 0:
                finish = reason
        if encoder.ended:
            break
        for choice in chunk.data["choices"]:
            out += encoder.delta(choice["delta"])
    usage = transcript("upstream_usage")
    out += encoder.finish(finish_override or finish, usage, 42) + MESSAGE_STOP
    return out


def final(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    return next(data for name, data in events if name == "message_delta")


def test_text_stream_event_order_bytes() -> None:
    raw = encode("text")
    events = parse_events(raw)
    assert [n for n, _ in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert check_grammar(events) == [{"type": "text", "text": "Hello"}]
    assert raw.startswith(b"event: message_start\ndata: {")
    assert b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,' in raw
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    start = events[0][1]["message"]
    assert start["usage"]["input_tokens"] == 42 and start["role"] == "assistant"
    assert start["content"] == [] and start["stop_reason"] is None
    assert final(events)["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


def test_usage_real_counts_and_cache_reads_in_message_delta() -> None:
    usage = final(parse_events(encode("text")))["usage"]
    assert usage == {
        "input_tokens": 1200 - 1024,  # Anthropic's input_tokens excludes cache reads
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1024,
        "output_tokens": 34,
    }


def test_usage_without_cache_reads_or_upstream_counts() -> None:
    assert usage_of({"prompt_tokens": 50, "completion_tokens": 3}, 40) == {
        "input_tokens": 50,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 3,
    }
    # No upstream prompt count: the estimate stands for the uncached prompt, never 0.
    assert usage_of(None, 0)["input_tokens"] == 1
    bad = {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 99}}
    assert usage_of(bad, 10)["input_tokens"] == 0
    assert usage_of(bad, 10)["cache_read_input_tokens"] == 10


def test_thinking_block_before_text_with_signature() -> None:
    blocks = check_grammar(parse_events(encode("thinking_then_text")))
    assert [b["type"] for b in blocks] == ["thinking", "text"]
    assert blocks[0]["thinking"] == "Let me think."
    assert blocks[1]["text"] == "Done."


def test_thinking_display_omitted_keeps_the_block_without_its_text() -> None:
    blocks = check_grammar(parse_events(encode("thinking_then_text", thinking_shown=False)))
    assert blocks[0] == {"type": "thinking", "thinking": "", "signature": blocks[0]["signature"]}


def test_thinking_after_text_opens_a_new_block_never_inside_text() -> None:
    blocks = check_grammar(parse_events(encode("text_thinking_text")))
    assert [b["type"] for b in blocks] == ["text", "thinking", "text"]


def test_streamed_tool_call_input_json_delta() -> None:
    events = parse_events(encode("tool_streamed"))
    blocks = check_grammar(events)
    assert blocks[0] == {"type": "text", "text": "Writing."}
    assert blocks[1]["type"] == "tool_use" and blocks[1]["id"] == "call_abc"
    assert blocks[1]["name"] == "Write"
    assert blocks[1]["input"] == {"file_path": "/tmp/hello.txt", "content": "hello"}
    deltas = [d["delta"] for n, d in events if n == "content_block_delta" and d["index"] == 1]
    assert all(d["type"] == "input_json_delta" for d in deltas) and len(deltas) == 2
    assert final(events)["delta"]["stop_reason"] == "tool_use"


def test_tool_call_in_one_chunk_keeps_its_input_and_tool_use_beats_stop() -> None:
    events = parse_events(encode("tool_in_one_chunk"))
    blocks = check_grammar(events)
    assert blocks == [
        {"type": "tool_use", "id": "call_one", "name": "Bash", "input": {"command": "ls"}}
    ]
    assert final(events)["delta"]["stop_reason"] == "tool_use"  # upstream said "stop"


def test_two_tool_calls_then_text_get_their_own_blocks() -> None:
    blocks = check_grammar(parse_events(encode("two_tools_then_text")))
    assert [(b["type"], b.get("id")) for b in blocks] == [
        ("tool_use", "c1"),
        ("tool_use", "c2"),
        ("text", None),
    ]
    assert blocks[1]["input"] == {"file_path": "b"}


def test_tool_name_arriving_after_arguments() -> None:
    blocks = check_grammar(parse_events(encode("name_late")))
    assert blocks == [{"type": "tool_use", "id": "c9", "name": "Bash", "input": {"a": 1}}]


def test_length_is_max_tokens() -> None:
    assert final(parse_events(encode("length")))["delta"]["stop_reason"] == "max_tokens"


def test_stop_sequence_across_chunks_cuts_text_and_names_the_sequence() -> None:
    events = parse_events(encode("stop_sequence", stop_sequences=("END",)))
    blocks = check_grammar(events)
    assert blocks == [{"type": "text", "text": "one two "}]
    assert final(events)["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


def test_stop_sequence_not_matched_releases_held_text() -> None:
    events = parse_events(encode("stop_sequence", stop_sequences=("ENDX",)))
    assert check_grammar(events) == [{"type": "text", "text": "one two END three four"}]
    assert final(events)["delta"]["stop_reason"] == "end_turn"


def test_stop_matcher_holds_only_possible_prefixes() -> None:
    matcher = StopMatcher(("STOP",))
    assert matcher.feed("abc S") == "abc "
    assert matcher.feed("x") == "Sx"
    assert matcher.feed("ST") == ""
    assert matcher.feed("OP and more") == ""
    assert matcher.matched == "STOP"


def _error_reply(error: GatewayError) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = error_response(error, "req-1")
    assert isinstance(response.body, bytes)
    return response.status, orjson.loads(response.body), dict(response.headers)


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (BadRequest("messages: expected a list"), 400, "invalid_request_error"),
        (
            UpstreamHTTPError("cerebras", 401, {"message": "bad key"}, fallback_ok=True),
            401,
            "authentication_error",
        ),
        (
            UpstreamHTTPError("cerebras", 403, {"message": "no"}, fallback_ok=True),
            403,
            "permission_error",
        ),
        (GatewayError("no such thing", status=404), 404, "not_found_error"),
        (RateLimited("slow down", retry_after=3.2, should_retry=True), 429, "rate_limit_error"),
        (BudgetExhausted("budget spent"), 402, "billing_error"),
        (GatewayError("bug"), 500, "api_error"),
        (NoUpstreamAvailable("no upstream could answer"), 529, "overloaded_error"),
    ],
)
def test_error_bodies(error: GatewayError, status: int, kind: str) -> None:
    got_status, body, headers = _error_reply(error)
    assert got_status == status
    assert body == {
        "type": "error",
        "error": {"type": kind, "message": error.message},
        "request_id": "req-1",
    }
    assert headers["request-id"] == "req-1"
    if isinstance(error, RateLimited):
        assert headers["retry-after"] == "4"


def test_context_overflow_says_prompt_is_too_long() -> None:
    """The door reads the upstream module's tag, not the wording
    (tests/integration/test_doors_overflow.py has the upstreams' own errors)."""
    llama = UpstreamHTTPError(
        "local",
        400,
        {
            "message": "request (9000 tokens) exceeds the available context size (8192 tokens)",
            "type": "exceed_context_size_error",
        },
        fallback_ok=True,
    )
    assert not _error_reply(llama)[1]["error"]["message"].startswith("prompt is too long")
    llama.condition = CONTEXT_LENGTH_EXCEEDED
    _, body, _ = _error_reply(llama)
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("prompt is too long: request (9000 tokens)")
    cerebras = UpstreamHTTPError(
        "cerebras",
        400,
        {"message": "Please reduce the length of the messages or completion"},
        fallback_ok=False,
    )
    cerebras.condition = CONTEXT_LENGTH_EXCEEDED
    assert _error_reply(cerebras)[1]["error"]["message"].startswith("prompt is too long")


def test_error_event_mid_stream() -> None:
    raw = error_event(NoUpstreamAvailable("both upstreams failed"))
    assert parse_events(raw) == [
        (
            "error",
            {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "both upstreams failed"},
            },
        )
    ]


def test_max_messages_counts_the_clients_messages_not_their_translation() -> None:
    """Six tool results in one user message become six chat messages: three client messages
    stay within a limit of 3, and a fourth is refused in this door's words."""
    calls = [{"type": "tool_use", "id": f"t{i}", "name": "f", "input": {}} for i in range(6)]
    results = [{"type": "tool_result", "tool_use_id": f"t{i}", "content": "ok"} for i in range(6)]
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": calls},
        {"role": "user", "content": [*results, {"type": "text", "text": "go"}]},
    ]
    door = MessagesDoor(DecodeOptions(max_messages=3))
    body = {"model": "m", "max_tokens": 5, "system": "s", "messages": messages}
    decoded = door.decode(body, {})
    assert len(decoded.body["messages"]) > 3
    extra = {**body, "messages": [*messages, {"role": "assistant", "content": "done"}]}
    with pytest.raises(BadRequest, match=r"^messages: 4 entries; the limit is 3$"):
        door.decode(extra, {})


def _stream_of(deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    encoder = StreamEncoder(decode({"model": "m", "max_tokens": 5, "messages": MSGS}).context)
    raw = message_start("msg_1", "m", 1)
    raw += b"".join(encoder.delta(d) for d in deltas) + encoder.finish("tool_calls", {}, 1)
    return check_grammar(parse_events(raw + MESSAGE_STOP))


def _call(index: int, name: str | None = None, arguments: str = "") -> dict[str, Any]:
    fn: dict[str, Any] = {"arguments": arguments}
    if name is not None:
        fn["name"] = name
    call: dict[str, Any] = {"index": index, "function": fn}
    if name is not None:
        call["id"] = f"call_{index}"
    return {"tool_calls": [call]}


MSGS = [{"role": "user", "content": "q"}]


def test_interleaved_tool_call_fragments_keep_every_argument() -> None:
    """A server may send call 1's name before call 0's arguments: call 1 is held whole until
    call 0's block closes, so no fragment is dropped."""
    blocks = _stream_of(
        [
            _call(0, "Read"),
            _call(1, "Write"),
            _call(0, arguments='{"p":'),
            _call(1, arguments='{"q":2}'),
            _call(0, arguments="1}"),
        ]
    )
    assert [(b["name"], b["id"], b["input"]) for b in blocks] == [
        ("Read", "call_0", {"p": 1}),
        ("Write", "call_1", {"q": 2}),
    ]


def test_held_calls_go_out_before_text_that_follows() -> None:
    blocks = _stream_of(
        [_call(0, "A", "{}"), _call(1, "B", '{"x":'), _call(1, arguments="1}"), {"content": "ok"}]
    )
    assert [(b["type"], b.get("input", b.get("text"))) for b in blocks] == [
        ("tool_use", {}),
        ("tool_use", {"x": 1}),
        ("text", "ok"),
    ]
