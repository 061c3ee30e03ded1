"""SSEDecoder: payloads independent of chunk boundaries, line endings, fields, size limit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.wire.sse import DONE, EventTooLarge, SSEDecoder

# A stream mixing everything a chat-completions upstream may send, with the payloads it carries.
STREAM = (
    b": keepalive\n\n"
    b'data: {"id":"1","choices":[{"delta":{"content":"h\xc3\xa9llo \xe2\x9c\x93"}}]}\n\n'
    b"event: message\r\n"
    b"id: 7\r\n"
    b"retry: 1000\r\n"
    b'data: {"id":"2"}\r\n'
    b"\r\n"
    b"data:no-space\n\n"
    b"data: line one\n"
    b": a comment inside an event\n"
    b"data: line two\n"
    b"data:\n"
    b"data: line four\n\n"
    b"\n\n\n"
    b"data:  two leading spaces\n\n"
    b"data: [DONE]\n\n"
)


PAYLOADS = [
    '{"id":"1","choices":[{"delta":{"content":"héllo ✓"}}]}'.encode(),
    b'{"id":"2"}',
    b"no-space",
    b"line one\nline two\n\nline four",
    b" two leading spaces",
    DONE,
]


def decode(chunks: list[bytes], limit: int = 1 << 20) -> list[bytes]:
    decoder = SSEDecoder(limit)
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.close())
    return out


def split(data: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({p for p in points if 0 < p < len(data)})
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def test_whole_stream() -> None:
    assert decode([STREAM]) == PAYLOADS


def test_every_single_split_point() -> None:
    for i in range(len(STREAM) + 1):
        assert decode([STREAM[:i], STREAM[i:]]) == PAYLOADS, i


def test_byte_by_byte() -> None:
    assert decode([STREAM[i : i + 1] for i in range(len(STREAM))]) == PAYLOADS


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_random_split_points_give_the_same_payloads(points: list[int]) -> None:
    assert decode(split(STREAM, points)) == PAYLOADS


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(
            st.binary(max_size=30).filter(lambda b: b"\n" not in b and b"\r" not in b),
            min_size=1,
            max_size=3,
        ),
        max_size=6,
    ),
    st.sampled_from([b"\n", b"\r\n"]),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=20),
)
def test_generated_events_round_trip(
    events: list[list[bytes]], eol: bytes, points: list[int]
) -> None:
    stream = b"".join(b"".join(b"data: " + line + eol for line in lines) + eol for lines in events)
    expected = [b"\n".join(lines) for lines in events]
    assert decode(split(stream, points)) == expected


def test_feed_returns_events_as_soon_as_they_complete() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n") == []
    assert decoder.feed(b"\n") == [b"a"]
    assert decoder.feed(b"data: b\n\ndata: c\n\ndata: d") == [b"b", b"c"]
    assert decoder.close() == [b"d"]


@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_line_endings(eol: bytes) -> None:
    stream = b"data: one" + eol + eol + b"data: a" + eol + b"data: b" + eol + eol
    assert decode([stream]) == [b"one", b"a\nb"]


def test_mixed_line_endings() -> None:
    assert decode([b"data: x\r\n\ndata: y\n\r\n"]) == [b"x", b"y"]


def test_cr_of_crlf_at_a_chunk_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\n\r") == []
    assert decoder.feed(b"\n") == [b"x"]


def test_multiline_data_joined_with_lf() -> None:
    assert decode([b'data: {\ndata:   "a": 1\ndata: }\n\n']) == [b'{\n  "a": 1\n}']


def test_comments_and_other_fields_are_ignored() -> None:
    stream = (
        b": ping\n\n"
        b":\n\n"
        b"event: chunk\nid: 1\nretry: 5\nfoo: bar\n\n"  # an event without data is no event
        b"event: chunk\ndata: real\nid: 2\n\n"
        b"Data: wrong case\n\n"
        b"dat: typo\n\n"
    )
    assert decode([stream]) == [b"real"]


def test_data_without_space_and_with_extra_spaces() -> None:
    assert decode([b"data:x\n\ndata: y\n\ndata:  z\n\n"]) == [b"x", b"y", b" z"]


def test_empty_data_line_is_an_empty_event() -> None:
    assert decode([b"data:\n\n"]) == [b""]
    assert decode([b"data: \n\n"]) == [b""]


def test_blank_lines_alone_yield_nothing() -> None:
    assert decode([b"\n\n\r\n\n"]) == []


def test_unterminated_last_event_delivered_by_close() -> None:
    for tail in (b"data: [DONE]", b"data: [DONE]\n", b"data: [DONE]\r\n", b"data: a\ndata: b"):
        decoder = SSEDecoder()
        assert decoder.feed(b"data: first\n\n" + tail) == [b"first"]
        expected = [b"a\nb"] if tail.startswith(b"data: a") else [DONE]
        assert decoder.close() == expected, tail


def test_close_without_pending_data() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\n") == [b"a"]
    assert decoder.close() == []
    assert SSEDecoder().close() == []
    decoder = SSEDecoder()
    decoder.feed(b": only a comment")
    assert decoder.close() == []


def test_event_over_the_limit_in_one_chunk() -> None:
    with pytest.raises(EventTooLarge):
        SSEDecoder(1024).feed(b"data: " + b"x" * 1025 + b"\n\n")


def test_event_at_the_limit_is_accepted() -> None:
    assert SSEDecoder(1024).feed(b"data: " + b"x" * 1024 + b"\n\n") == [b"x" * 1024]


def test_unterminated_line_growing_past_the_limit() -> None:
    decoder = SSEDecoder(1024)
    decoder.feed(b"data: ")
    with pytest.raises(EventTooLarge):
        for _ in range(20):
            decoder.feed(b"x" * 100)


def test_multiline_event_over_the_limit() -> None:
    line = b"data: " + b"x" * 400 + b"\n"
    with pytest.raises(EventTooLarge):
        SSEDecoder(1024).feed(line * 3 + b"\n")


def test_limit_is_per_event() -> None:
    event = b"data: " + b"x" * 800 + b"\n\n"
    assert decode([event * 10], limit=1024) == [b"x" * 800] * 10
    assert decode(split(event * 10, list(range(0, 8060, 97))), limit=1024) == [b"x" * 800] * 10


def test_event_too_large_is_a_value_error() -> None:
    assert issubclass(EventTooLarge, ValueError)


def test_limit_does_not_depend_on_chunk_boundaries() -> None:
    event = b"data: " + b"x" * 1024 + b"\n\n"
    assert decode([event], limit=1024) == [b"x" * 1024]
    assert decode([event[:-2], event[-2:]], limit=1024) == [b"x" * 1024]
