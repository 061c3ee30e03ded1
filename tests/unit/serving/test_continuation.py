"""Continuing a broken stream on the other upstream: the seam, the exclusions, a disconnect."""

from __future__ import annotations

import pytest
from support import chat

from gateway.config import ConfigError, parse_config
from gateway.serving.continuation import EchoStrip, continuation_body
from gateway.wire.chunk import Chunk, read_chunk


def _content(text: str) -> list[Chunk]:
    return [read_chunk({"choices": [{"index": 0, "delta": {"content": text}}]})]


def _strip(prefill: str, deltas: list[str]) -> str:
    echo: EchoStrip | None = EchoStrip(prefill)
    out = []
    for text in deltas:
        batch = _content(text)
        if echo is not None and echo.feed(batch):
            echo = None
        out.append(batch[0].data["choices"][0]["delta"]["content"])
        assert batch[0].text == out[-1], "the facts follow the stripped text"
    return "".join(out)


def test_echo_of_the_whole_prefill_in_the_first_delta_is_stripped() -> None:
    assert _strip("a b c", ["a b c d", " e", " f"]) == " d e f"


def test_echo_split_over_deltas_is_stripped() -> None:
    assert _strip("a b c", ["a b", " c", " d", " e"]) == " d e"


def test_continuation_without_echo_is_kept_whole() -> None:
    assert _strip("a b c", [" d", " e"]) == " d e"
    assert _strip("a b c", ["a", "nd so on"]) == "and so on", "held text comes back"


def test_continuation_body_appends_the_prefill_and_lowers_the_limit() -> None:
    body = chat("hi", max_tokens=100)
    out = continuation_body(body, "Partial", 30)
    assert out["messages"][-1] == {"role": "assistant", "content": "Partial"}
    assert out["max_tokens"] == 70
    assert len(body["messages"]) == 1, "the client's body is not changed"


def test_bad_mid_stream_mode_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"routing\.fallback\.mid_stream"):
        parse_config({"routing": {"fallback": {"mid_stream": "splice"}}}, env={})
    assert parse_config(None, env={}).routing.fallback_mid_stream == "continue"
