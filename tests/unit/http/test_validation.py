"""Request validation: every rule, its status, code and param, and the OpenAI error shape."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import BadRequest
from gateway.http.validation import ROLES, check_content_type, parse_body, validate_chat_request

USER = {"role": "user", "content": "hi"}


def reject(body: dict[str, Any], max_messages: int = 100) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        validate_chat_request(body, max_messages=max_messages)
    return info.value


def check_shape(exc: BadRequest, status: int = 400) -> dict[str, Any]:
    assert exc.status == status
    body = exc.body()
    assert list(body) == ["error"]
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] == "invalid_request_error"
    return error


CLINE_BODY: dict[str, Any] = {
    "model": "glm",
    "messages": [
        {"role": "system", "content": "You are Cline"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<task>\nhi\n</task>"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "result"},
        {"role": "developer", "content": "be brief"},
        {"role": "function", "name": "f", "content": "legacy"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "thanks"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "tool_choice": "auto",
    "stream": True,
    "stream_options": {"include_usage": True},
    "temperature": 0,
    "top_p": 1,
    "n": 1,
    "max_tokens": 1,
    "max_completion_tokens": 40_000,
    "parallel_tool_calls": False,
    "response_format": {"type": "json_object"},
    "stop": "\n",
    "seed": 7,
    "logprobs": True,
    "future_field": {"anything": [1, 2]},
}


def test_a_full_cline_request_is_accepted() -> None:
    body = dict(CLINE_BODY)
    validate_chat_request(body, max_messages=100)
    assert body == CLINE_BODY  # validation does not touch the body


@pytest.mark.parametrize(
    "extra",
    [
        {"model": None},
        {"stream": None},
        {"temperature": 1.5},
        {"stream_options": {}},
        {"stream_options": {"include_usage": False}},
    ],
)
def test_optional_fields_accepted(extra: dict[str, Any]) -> None:
    validate_chat_request({"messages": [USER], **extra}, max_messages=1)


def test_exactly_max_messages_is_accepted() -> None:
    validate_chat_request({"messages": [USER] * 5}, max_messages=5)


def test_roles() -> None:
    assert ROLES == {"system", "developer", "user", "assistant", "tool", "function"}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({}, "messages", "missing_required_parameter"),
        ({"messages": None}, "messages", "missing_required_parameter"),
        ({"messages": "hi"}, "messages", "invalid_type"),
        ({"messages": {"role": "user", "content": "hi"}}, "messages", "invalid_type"),
        ({"messages": []}, "messages", "empty_array"),
        ({"messages": [USER] * 6}, "messages", "too_many_messages"),
        ({"messages": ["hi"]}, "messages[0]", "invalid_type"),
        ({"messages": [USER, None]}, "messages[1]", "invalid_type"),
        ({"messages": [{"content": "hi"}]}, "messages[0].role", "missing_required_parameter"),
        ({"messages": [{"role": 1, "content": "x"}]}, "messages[0].role", None),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"messages": [{"role": "User", "content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
        (
            {"messages": [USER, {"role": "tool", "content": None}]},
            "messages[1].content",
            "missing_required_parameter",
        ),
        ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content", "invalid_type"),
        (
            {"messages": [{"role": "user", "content": {"type": "text"}}]},
            "messages[0].content",
            "invalid_type",
        ),
        (
            {"messages": [{"role": "user", "content": ["hi"]}]},
            "messages[0].content[0]",
            "invalid_type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {}]}]},
            "messages[0].content[1]",
            "invalid_type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": 3, "text": "a"}]}]},
            "messages[0].content[0]",
            "invalid_type",
        ),
    ],
)
def test_message_rules(body: dict[str, Any], param: str, code: str | None) -> None:
    error = check_shape(reject(body, max_messages=5))
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    else:
        assert error["code"] in ("missing_required_parameter", "invalid_type")


def test_unknown_role_message_names_the_role_and_the_allowed_ones() -> None:
    message = reject({"messages": [{"role": "robot", "content": "x"}]}).message
    assert "'robot'" in message
    assert "assistant" in message and "user" in message


def test_long_unknown_role_is_truncated_in_the_message() -> None:
    message = reject({"messages": [{"role": "r" * 10_000, "content": "x"}]}).message
    assert len(message) < 300


def test_too_many_messages_names_the_limit() -> None:
    error = check_shape(reject({"messages": [USER] * 11}, max_messages=10))
    assert "11" in error["message"] and "10" in error["message"]


def test_first_bad_message_is_reported() -> None:
    body = {"messages": [USER, {"role": "x", "content": "a"}, {"role": "user"}]}
    assert reject(body).param == "messages[1].role"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model", 5),
        ("model", ["glm"]),
        ("stream", "true"),
        ("stream", 1),
        ("stream_options", True),
        ("stream_options", "include_usage"),
        ("tools", {"type": "function"}),
        ("temperature", "0.7"),
        ("temperature", True),
        ("top_p", "1"),
        ("top_p", False),
        ("n", 1.0),
        ("n", True),
        ("max_tokens", 100.0),
        ("max_tokens", "100"),
        ("max_tokens", True),
        ("max_completion_tokens", 2.5),
        ("max_completion_tokens", False),
    ],
)
def test_wrong_types(key: str, value: Any) -> None:
    error = check_shape(reject({"messages": [USER], key: value}))
    assert error["param"] == key
    assert error["code"] == "invalid_type"
    assert f"'{key}'" in error["message"]


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [0, -1, -100_000])
def test_token_limit_below_one(key: str, value: int) -> None:
    error = check_shape(reject({"messages": [USER], key: value}))
    assert error["param"] == key
    assert error["code"] == "invalid_value"
    assert "at least 1" in error["message"]


def test_include_usage_must_be_a_boolean() -> None:
    error = check_shape(reject({"messages": [USER], "stream_options": {"include_usage": "yes"}}))
    assert "include_usage" in str(error["param"])
    assert error["code"] == "invalid_type"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "text/json",
        "application/vnd.api+json",
        "",
        "application/octet-stream",
        "application/x-www-form-urlencoded",  # curl -d without -H
    ],
)
def test_json_content_types_accepted(content_type: str) -> None:
    check_content_type(content_type)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/html; charset=utf-8", "multipart/form-data; boundary=x", "image/png"],
)
def test_other_content_types_are_415(content_type: str) -> None:
    with pytest.raises(BadRequest) as info:
        check_content_type(content_type)
    error = check_shape(info.value, status=415)
    assert error["code"] == "unsupported_media_type"
    assert content_type.split(";")[0] in error["message"]


def test_parse_body_returns_the_object() -> None:
    assert parse_body(b'{"messages": [{"role": "user", "content": "h\\u00e9"}]}') == {
        "messages": [{"role": "user", "content": "hé"}]
    }
    assert parse_body('{"a": "é"}'.encode()) == {"a": "é"}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   \n",
        b"{",
        b'{"messages": [}',
        b"{'single': 'quotes'}",
        b'{"a": NaN}',
        b"\xff\xfe{}",
        b'{"a": "\xc3"}',
        b"[1, 2]",
        b'"a string"',
        b"null",
        b"42",
    ],
)
def test_parse_body_rejects(raw: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        parse_body(raw)
    error = check_shape(info.value)
    assert error["code"] == "invalid_json"
    assert error["param"] is None


def test_bad_request_body_has_exactly_the_openai_keys() -> None:
    exc = reject({"messages": []})
    assert exc.body() == {
        "error": {
            "message": "'messages' must contain at least one message",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "empty_array",
        }
    }
    assert exc.headers() == {}
