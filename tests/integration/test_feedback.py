"""POST /v1/feedback: authentication, 400 for bad input, 404 for an unknown id, labels applied
to the router for local answers and persisted in learning.db."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support import chat, post_stream

CLIENT_KEY = "client-key-feedback-1"


async def feedback(client, gw, body: Any, key: str | None = None, raw: bytes | None = None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = gw.url + "/feedback"
    kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
    async with client.post(url, headers=headers, **kwargs) as resp:
        return resp.status, await resp.json()


async def answered(client, gw, text: str = "hi", key: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    reply = await post_stream(client, gw.url, chat(text, stream=True), headers=headers)
    assert reply.status == 200
    return reply.headers["x-request-id"]


async def test_feedback_needs_the_client_key(make_gateway, client) -> None:
    gw = await make_gateway("smart_routing", auth={"api_keys": [CLIENT_KEY]})
    request_id = await answered(client, gw, key=CLIENT_KEY)
    status, body = await feedback(client, gw, {"request_id": request_id, "score": 1})
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    status, body = await feedback(client, gw, {"request_id": request_id, "score": 1}, CLIENT_KEY)
    assert status == 200 and body["status"] == "recorded"


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"score": 1}, "request_id"),
        ({"request_id": "", "score": 1}, "request_id"),
        ({"request_id": 7, "score": 1}, "request_id"),
        ({"request_id": "x" * 200, "score": 1}, "request_id"),
        ({"request_id": "abc"}, "score"),
        ({"request_id": "abc", "score": "1"}, "score"),
        ({"request_id": "abc", "score": True}, "score"),
        ({"request_id": "abc", "score": 1.5}, "score"),
        ({"request_id": "abc", "score": -2}, "score"),
        ({"request_id": "abc", "score": None}, "score"),
        ([1, 2], None),
    ],
)
async def test_bad_input_is_400(make_gateway, client, payload: Any, param: str | None) -> None:
    gw = await make_gateway("always_local")
    status, body = await feedback(client, gw, payload)
    assert status == 400
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == param


@pytest.mark.parametrize(
    "raw", [b"not json", b"", b"\xff\xfe", b'{"request_id": "a", "score": NaN}']
)
async def test_unparsable_body_is_400(make_gateway, client, raw: bytes) -> None:
    gw = await make_gateway("always_local")
    status, body = await feedback(client, gw, None, raw=raw)
    assert status == 400 and body["error"]["type"] == "invalid_request_error"


async def test_unknown_id_is_404(make_gateway, client) -> None:
    gw = await make_gateway("always_local")
    status, body = await feedback(client, gw, {"request_id": "never-served", "score": -1})
    assert status == 404
    assert body["error"]["type"] == "not_found_error"
    assert body["error"]["code"] == "unknown_request_id"


async def test_wrong_method_is_405_in_openai_shape(make_gateway, client) -> None:
    gw = await make_gateway("always_local")
    async with client.get(gw.url + "/feedback") as resp:
        assert resp.status == 405
        assert "error" in await resp.json()


async def test_bad_feedback_teaches_the_router_and_escalates(
    make_gateway, client, local_sim, cerebras_sim, tmp_path: Path
) -> None:
    gw = await make_gateway("smart_routing")
    body = chat("say hello", stream=True)
    first = await post_stream(client, gw.url, body)
    request_id = first.headers["x-request-id"]
    assert first.chunks[-1]["model_used"] == "local"
    status, reply = await feedback(client, gw, {"request_id": request_id, "score": -1})
    assert status == 200
    assert reply["label"] == "bad" and reply["model_used"] == "local"
    assert reply["learned"] is True, "the router scored this request, so it learns from it"
    assert reply["escalated"] is True
    # The next turn of that conversation goes to Cerebras, saying why.
    body["messages"] += [
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": "again"},
    ]
    second = await post_stream(client, gw.url, body)
    assert second.chunks[-1]["model_used"] == "cerebras"
    assert "was rated bad (feedback -1)" in second.chunks[-1]["routing_reason"]

    rows = (
        sqlite3.connect(tmp_path / "learning.db")
        .execute("SELECT request_id, source, bad, weight, applied FROM labels")
        .fetchall()
    )
    assert (request_id, "feedback", 1, 1.0, 1) in rows
    stats = await (await client.get(gw.root + "/stats")).json()
    assert stats["router"]["labels"].get("feedback") == 1


async def test_recorded_means_committed(make_gateway, client, tmp_path: Path) -> None:
    """The learned state is group-committed across requests, kept back for up to 0.1 s; a
    feedback answer waits for its own: the label and the weights it moved are on disk."""
    gw = await make_gateway("smart_routing")
    request_id = await answered(client, gw, "say hello")
    status, reply = await feedback(client, gw, {"request_id": request_id, "score": -0.5})
    assert status == 200 and reply["learned"] is True
    for name in ("learning.db", "router.db"):  # read at once: no flush, no waiting
        with sqlite3.connect(tmp_path / name) as db:
            labels = db.execute("SELECT request_id FROM labels").fetchall()
        assert labels == [(request_id,)], name
    with sqlite3.connect(tmp_path / "router.db") as db:
        assert db.execute("SELECT COUNT(*) FROM weights").fetchone()[0] > 0


async def test_good_and_neutral_scores(make_gateway, client) -> None:
    gw = await make_gateway("smart_routing")
    request_id = await answered(client, gw, "hi there")
    status, reply = await feedback(client, gw, {"request_id": request_id, "score": 0.5})
    assert status == 200 and reply["label"] == "good" and reply["escalated"] is False
    status, reply = await feedback(client, gw, {"request_id": request_id, "score": 0})
    assert status == 200 and reply["label"] is None and reply["learned"] is False


async def test_cerebras_answer_feedback_is_stored_not_learned(make_gateway, client) -> None:
    gw = await make_gateway("always_cerebras")
    request_id = await answered(client, gw)
    status, reply = await feedback(client, gw, {"request_id": request_id, "score": -1})
    assert status == 200
    assert reply["model_used"] == "cerebras" and reply["learned"] is False
