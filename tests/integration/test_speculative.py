"""speculative_decoding and smart_speculative through a real gateway in front of the simulators.

The client must see exactly the committed upstream's answer, once and in order; the other call's
connection must be closed at the verdict (the simulator records `disconnected_at`). Scripted
answers use words of at most three letters, so the gateway's token estimate for a cancelled call
(four characters a token, at least one per event) equals the simulator's count exactly.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from support import chat, eventually, post_stream, script

from gateway.accounting.tokens import estimate_prompt_tokens
from gateway.dev.sim import SimServer, ToolCallSpec
from gateway.errors import UpstreamError
from gateway.quota.admission import Refusal, Ticket
from gateway.speculation.race import QUEUE_EVENTS
from gateway.upstreams import UpstreamStream
from gateway.wire.sinks import StreamSink

LOCAL = "the cat sat on the mat and ate a fig but not the big red one so she ran to the sea"


SIMILAR = "the cat sat on the mat and had tea in the sun all day and all of the eve too"


OTHER = "a dog ran far off to get his toy box and now he is wet and mad at us all day"


META_KEYS = {
    "draft_tokens",
    "verified_tokens",
    "accepted",
    "spilled_over",
    "similarity",
    "decided_by",
}


def pace(sim: SimServer, tps: float = 0.0, ttft: float = 0.0) -> None:
    sim.options.tps = tps
    sim.options.ttft = ttft


async def speculative(
    make_gateway: Any, strategy: str = "speculative_decoding", **keys: Any
) -> Any:
    return await make_gateway(strategy, speculative_decoding={"max_draft_tokens": 5, **keys})


def verdict_of(final: dict[str, Any]) -> dict[str, Any]:
    meta = final["speculative_decoding"]
    assert set(meta) == META_KEYS
    return meta


async def get_stats(client: Any, gw: Any) -> dict[str, Any]:
    async with client.get(gw.root + "/stats") as resp:
        return dict(await resp.json())


async def test_accepted_draft_is_streamed_and_cerebras_closed_at_the_verdict(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    script(local_sim, "p", LOCAL, reasoning="hmm let me see")
    script(cerebras_sim, "p", SIMILAR, reasoning="ok so")
    pace(local_sim, tps=50)
    pace(cerebras_sim, tps=20)
    gw = await speculative(make_gateway)
    reply = await post_stream(client, gw.url, chat("p", stream=True))
    assert reply.status == 200
    assert reply.text == LOCAL
    assert reply.reasoning == "hmm let me see"
    assert reply.data[-1] == "[DONE]" and reply.raw.count(b"[DONE]") == 1
    chunks = reply.chunks
    roles = [c for c in chunks if c["choices"] and "role" in c["choices"][0]["delta"]]
    assert roles == chunks[:1]
    assert {c["model"] for c in chunks} == {"glm-token-saver"}  # one model name, sent at once
    final = reply.chunks[-1]
    assert final["model_used"] == "local"
    assert final["routing_reason"].startswith("speculative_decoding: draft accepted (levenshtein")
    meta = verdict_of(final)
    assert meta["accepted"] is True and meta["spilled_over"] is False
    assert meta["similarity"] == 1.0 and meta["decided_by"] == "levenshtein"
    (verify,) = cerebras_sim.requests
    await eventually(lambda: verify.disconnected_at is not None, "the verify call closed")
    assert not verify.finished
    assert verify.completion_tokens_sent == 2 + 5  # reasoning, then the 5-token window
    assert meta["verified_tokens"] == 7
    assert local_sim.requests[0].finished
    assert meta["draft_tokens"] == local_sim.requests[0].completion_tokens_sent


async def test_rejected_draft_gives_cerebras_stream_and_closes_local(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    # Both answers outlast a pause of the test process: the simulators pace by the clock, so
    # after a pause each sends at once every token it owed, and an answer whose end fell inside
    # the pause arrives whole. Twice in CI, with answers of 0.6 s, the verdict came 0.65-0.85 s
    # in (0.16 s as a rule) and found Cerebras's answer complete (`verify_complete`). Now
    # Cerebras's answer takes 1.8 s and the draft 3.3 s, so the draft is still streaming and
    # Cerebras's answer unfinished at any verdict within 1.8 s.
    answer = " ".join([OTHER] * 3)
    script(local_sim, "p", " ".join([LOCAL] * 6), reasoning="hmm")
    script(cerebras_sim, "p", answer, reasoning="ok so")
    pace(local_sim, tps=40)
    pace(cerebras_sim, tps=40)
    gw = await speculative(make_gateway)
    reply = await post_stream(client, gw.url, chat("p", stream=True))
    assert reply.text == answer
    assert reply.reasoning == "ok so"
    final = reply.chunks[-1]
    assert final["model_used"] == "cerebras"
    meta = verdict_of(final)
    assert meta["accepted"] is False and meta["spilled_over"] is True
    assert meta["decided_by"] == "levenshtein" and meta["similarity"] < 0.7
    assert "rejected" not in final["routing_reason"]
    assert final["routing_reason"].startswith(
        "speculative_decoding: cerebras committed (levenshtein"
    )
    (draft,) = local_sim.requests
    await eventually(lambda: draft.disconnected_at is not None, "the draft call closed")
    assert not draft.finished
    assert cerebras_sim.requests[0].finished
    assert meta["verified_tokens"] == cerebras_sim.requests[0].completion_tokens_sent


@pytest.mark.parametrize("strategy", ["speculative_decoding", "smart_speculative"])
@pytest.mark.parametrize("accepted", [True, False])
async def test_non_stream_clients(
    make_gateway, client, local_sim, cerebras_sim, strategy: str, accepted: bool
) -> None:
    prompt = "debug the cat"  # complex for smart_speculative
    script(local_sim, prompt, LOCAL, reasoning="hmm")
    script(cerebras_sim, prompt, SIMILAR if accepted else OTHER)
    # Cerebras's answer takes 1.2 s, so that a pause of the test process cannot let it end
    # before the verdict (test_rejected_draft_gives_cerebras_stream_and_closes_local).
    pace(local_sim, tps=200)
    pace(cerebras_sim, tps=20)
    gw = await speculative(make_gateway, strategy)
    async with client.post(gw.url + "/chat/completions", json=chat(prompt)) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["object"] == "chat.completion"
    message = body["choices"][0]["message"]
    assert message["content"] == (LOCAL if accepted else OTHER)
    assert body["choices"][0]["logprobs"] is None
    assert body["model_used"] == ("local" if accepted else "cerebras")
    assert body["routing_reason"].startswith(strategy)
    meta = verdict_of(body)
    assert meta["accepted"] is accepted and meta["spilled_over"] is not accepted
    assert body["usage"]["completion_tokens"] > 0


async def test_short_draft_is_accepted_at_once_and_cancels_verification(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    script(local_sim, "2+2", "it is 4")
    cerebras_sim.hold()  # Cerebras never sends a byte: the answer cannot wait for it
    gw = await speculative(make_gateway, max_draft_tokens=10)
    reply = await asyncio.wait_for(post_stream(client, gw.url, chat("2+2", stream=True)), 10)
    assert reply.text == "it is 4"
    meta = verdict_of(reply.chunks[-1])
    assert (meta["accepted"], meta["decided_by"], meta["verified_tokens"]) == (
        True,
        "short_draft",
        0,
    )
    (verify,) = cerebras_sim.requests
    await eventually(lambda: verify.disconnected_at is not None, "the verify call closed")
    # Cancelled before its first token, the verify call is still billed its prompt (estimated).
    stats = await get_stats(client, gw)
    assert stats["tokens"]["by_model"]["cerebras"]["prompt"] == estimate_prompt_tokens(chat("2+2"))
    assert stats["costs"]["estimated_tokens"] is True


async def test_short_draft_rule_can_be_switched_off(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    script(local_sim, "2+2", "it is 4")
    script(cerebras_sim, "2+2", "it is 4 and not 5 as we saw")
    pace(cerebras_sim, tps=50)
    gw = await speculative(make_gateway, max_draft_tokens=10, accept_short_drafts=False)
    reply = await post_stream(client, gw.url, chat("2+2", stream=True))
    meta = verdict_of(reply.chunks[-1])
    assert meta["decided_by"] != "short_draft"
    assert len(cerebras_sim.requests) == 1


async def test_after_draft_short_draft_never_calls_cerebras(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    script(local_sim, "2+2", "it is 4")
    gw = await speculative(make_gateway, max_draft_tokens=10, verify_start="after_draft")
    reply = await post_stream(client, gw.url, chat("2+2", stream=True))
    assert reply.text == "it is 4"
    assert verdict_of(reply.chunks[-1])["decided_by"] == "short_draft"
    assert cerebras_sim.requests == []


@pytest.mark.parametrize("stream", [True, False])
async def test_after_draft_confident_logprobs_accept_without_cerebras_and_do_not_leak(
    make_gateway, client, local_sim, cerebras_sim, stream: bool
) -> None:
    script(local_sim, "p", LOCAL, logprob=-0.05)
    gw = await speculative(make_gateway, verify_start="after_draft", logprob_signal=True)
    async with client.post(gw.url + "/chat/completions", json=chat("p", stream=stream)) as resp:
        raw = await resp.read()
    assert b'"logprobs":{' not in raw and b'"top_logprobs"' not in raw
    assert b'"decided_by":"logprobs"' in raw
    assert LOCAL.encode() in raw or b" sea" in raw
    assert cerebras_sim.requests == []
    sent = local_sim.requests[0].body
    assert sent["logprobs"] is True and sent["top_logprobs"] == 1


async def test_unsure_logprobs_go_to_verification(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    script(local_sim, "p", LOCAL, logprob=-3.0)
    script(cerebras_sim, "p", SIMILAR)
    pace(cerebras_sim, tps=50)
    gw = await speculative(make_gateway, verify_start="after_draft", logprob_signal=True)
    reply = await post_stream(client, gw.url, chat("p", stream=True))
    assert reply.text == LOCAL
    assert verdict_of(reply.chunks[-1])["decided_by"] == "levenshtein"
    assert len(cerebras_sim.requests) == 1


async def test_no_logprobs_asked_of_llamacpp_with_tools(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    # llama-server refuses logprobs together with tools and stream (400).
    tools = [
        {"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}
    ]
    script(local_sim, "p", LOCAL)
    script(cerebras_sim, "p", SIMILAR)
    pace(cerebras_sim, tps=50)
    gw = await speculative(make_gateway, verify_start="after_draft", logprob_signal=True)
    reply = await post_stream(client, gw.url, chat("p", stream=True, tools=tools))
    assert "logprobs" not in local_sim.requests[0].body
    assert verdict_of(reply.chunks[-1])["decided_by"] == "levenshtein"


READ_APP = ToolCallSpec("read_file", '{"path": "src/app.py"}')


READ_MAIN = ToolCallSpec("read_file", '{"path": "src/main.py"}')


WRITE = ToolCallSpec("write_to_file", '{"path": "notes.txt", "content": "' + "abc " * 20 + '"}')


@pytest.mark.parametrize("same", [True, False])
async def test_tool_call_verdict(make_gateway, client, local_sim, cerebras_sim, same: bool) -> None:
    script(local_sim, "fix it", "ok", tool_calls=[READ_APP, WRITE])
    script(cerebras_sim, "fix it", "ok", tool_calls=[READ_APP if same else READ_MAIN, WRITE])
    pace(cerebras_sim, tps=20)
    # The 12-token window ends inside the second call: Cerebras still streams at the verdict.
    gw = await speculative(make_gateway, max_draft_tokens=12)
    reply = await post_stream(client, gw.url, chat("fix it", stream=True))
    final = reply.chunks[-1]
    meta = verdict_of(final)
    assert meta["decided_by"] == "tool_calls"
    assert meta["accepted"] is same
    assert final["model_used"] == ("local" if same else "cerebras")
    calls: dict[int, dict[str, str]] = {}
    for chunk in reply.chunks:
        for choice in chunk["choices"]:
            for fragment in choice["delta"].get("tool_calls") or ():
                entry = calls.setdefault(fragment["index"], {"name": "", "arguments": ""})
                entry["name"] += fragment["function"].get("name") or ""
                entry["arguments"] += fragment["function"].get("arguments") or ""
    first = READ_APP if same else READ_MAIN
    assert [calls[0]["name"], calls[0]["arguments"]] == [first.name, first.arguments]
    assert calls[1]["arguments"] == WRITE.arguments
    finishing = [c for c in reply.chunks if c["choices"] and c["choices"][0].get("finish_reason")]
    assert finishing[-1]["choices"][0]["finish_reason"] == "tool_calls"
    if same:
        await eventually(
            lambda: cerebras_sim.requests[0].disconnected_at is not None,
            "the Cerebras call closed",
        )
    else:
        assert meta["similarity"] < 0.9


@pytest.mark.parametrize(
    ("fault", "params", "decided_by"),
    [
        ("http_429", {}, "verify_rate_limited"),
        ("error_event", {"after_chunks": 3}, "verify_failed"),
        ("cut", {"after_chunks": 3}, "verify_failed"),
    ],
)
async def test_cerebras_failing_during_verification_commits_the_draft(
    make_gateway, client, local_sim, cerebras_sim, fault, params, decided_by
) -> None:
    script(local_sim, "p", LOCAL)
    script(cerebras_sim, "p", SIMILAR)
    pace(cerebras_sim, tps=20)
    cerebras_sim.inject(fault, **params)
    gw = await speculative(make_gateway)
    reply = await post_stream(client, gw.url, chat("p", stream=True))
    assert reply.text == LOCAL
    assert not any("error" in c for c in reply.chunks)
    assert reply.data[-1] == "[DONE]"
    final = reply.chunks[-1]
    assert final["model_used"] == "local"
    assert verdict_of(final)["decided_by"] == decided_by
    stats = await get_stats(client, gw)
    assert stats["errors"]["by_model"]["cerebras"] == 1
    assert stats["rate_limits"]["total_hits"] == (1 if fault == "http_429" else 0)


async def test_local_failing_mid_window_commits_cerebras(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    script(local_sim, "p", LOCAL)
    script(cerebras_sim, "p", OTHER)
    pace(local_sim, tps=50)
    pace(cerebras_sim, tps=20)
    local_sim.inject("cut", after_chunks=3)
    gw = await speculative(make_gateway)
    reply = await post_stream(client, gw.url, chat("p", stream=True))
    assert reply.text == OTHER
    final = reply.chunks[-1]
    assert final["model_used"] == "cerebras"
    meta = verdict_of(final)
    assert (meta["accepted"], meta["spilled_over"], meta["decided_by"]) == (
        False,
        True,
        "draft_failed",
    )


async def test_draft_without_content_by_the_deadline_gives_way(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    script(cerebras_sim, "p", OTHER)
    pace(cerebras_sim, tps=20)
    local_sim.inject("slow_first_token", delay=5.0)
    gw = await speculative(make_gateway, draft_timeout=0.3)
    reply = await post_stream(client, gw.url, chat("p", stream=True))
    assert reply.text == OTHER
    assert verdict_of(reply.chunks[-1])["decided_by"] == "draft_timeout"
    await eventually(
        lambda: local_sim.requests[0].disconnected_at is not None, "the local call closed"
    )


async def test_verify_answer_finished_first_is_committed(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    script(local_sim, "p", LOCAL)
    script(cerebras_sim, "p", OTHER)
    pace(local_sim, ttft=1.0)
    gw = await speculative(make_gateway)
    reply = await post_stream(client, gw.url, chat("p", stream=True))
    assert reply.text == OTHER
    meta = verdict_of(reply.chunks[-1])
    assert (meta["accepted"], meta["decided_by"]) == (False, "verify_complete")
    await eventually(
        lambda: local_sim.requests[0].disconnected_at is not None, "the local call closed"
    )


class RefuseCerebras:
    """A gate refusing Cerebras; counts the tickets it hands out and gets back."""

    def __init__(self) -> None:
        self.admitted = 0
        self.released = 0

    async def admit(
        self, upstream: str, body: Any, prompt_tokens: Any = None
    ) -> Ticket | Refusal:
        if upstream == "cerebras":
            return Refusal("cerebras", "over budget", retry_after=30.0)
        self.admitted += 1
        gate = self

        class Counted:
            done = False

            def release(self, headers: Any = None) -> None:
                if not self.done:
                    self.done = True
                    gate.released += 1

        return Counted()

    def observe_failure(self, upstream: str, error: UpstreamError) -> None:
        return None


async def test_gate_refusal_commits_the_draft_without_calling_cerebras(
    make_gateway, client, local_sim, cerebras_sim, monkeypatch
) -> None:
    script(local_sim, "p", LOCAL)
    gw = await speculative(make_gateway)
    gate = RefuseCerebras()
    monkeypatch.setattr(gw.services.gate, "for_strategy", lambda name: gate)
    reply = await post_stream(client, gw.url, chat("p", stream=True))
    assert reply.text == LOCAL
    assert verdict_of(reply.chunks[-1])["decided_by"] == "verify_refused"
    assert cerebras_sim.requests == []
    assert gate.admitted == gate.released == 1


async def test_client_disconnect_cancels_every_call(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    pace(local_sim, tps=5)
    pace(cerebras_sim, ttft=3.0)
    gw = await speculative(make_gateway)
    resp = await client.post(gw.url + "/chat/completions", json=chat("p", stream=True))
    assert (await resp.content.readuntil(b"\n\n")).startswith(b"data: ")
    await eventually(
        lambda: len(local_sim.requests) == 1 and len(cerebras_sim.requests) == 1,
        "one call to each upstream",
    )
    resp.close()
    await eventually(
        lambda: local_sim.requests[0].disconnected_at is not None, "the local call closed"
    )
    await eventually(
        lambda: cerebras_sim.requests[0].disconnected_at is not None, "the Cerebras call closed"
    )
    await eventually(
        lambda: gw.services.stats.get_statistics()["requests"]["total"] == 1, "one request counted"
    )
    stats = gw.services.stats.get_statistics()
    assert stats["requests"]["by_outcome"] == {"client_disconnected": 1}


async def test_smart_speculative_sends_simple_asks_to_local_only(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    script(local_sim, "hello", "hi")
    gw = await speculative(make_gateway, "smart_speculative")
    reply = await post_stream(client, gw.url, chat("hello", stream=True))
    final = reply.chunks[-1]
    assert final["model_used"] == "local"
    assert "speculative_decoding" not in final
    assert final["routing_reason"].startswith("smart_speculative: simple")
    assert cerebras_sim.requests == []


async def test_smart_speculative_speculates_on_complex_asks(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    script(local_sim, "debug the cat", LOCAL)
    script(cerebras_sim, "debug the cat", SIMILAR)
    pace(cerebras_sim, tps=50)
    gw = await speculative(make_gateway, "smart_speculative")
    reply = await post_stream(client, gw.url, chat("debug the cat", stream=True))
    final = reply.chunks[-1]
    assert verdict_of(final)["decided_by"] == "levenshtein"
    assert "complex: keyword 'debug'" in final["routing_reason"]


async def test_smart_speculative_classifies_a_complex_ask_once(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    script(cerebras_sim, "debug the cat", OTHER)
    gw = await speculative(make_gateway, "smart_speculative", enabled=False)
    reply = await post_stream(client, gw.url, chat("debug the cat", stream=True))
    final = reply.chunks[-1]
    assert final["model_used"] == "cerebras"
    assert final["routing_reason"] == (
        "smart_speculative (complex: keyword 'debug'): speculation disabled; "
        "complex: keyword 'debug'"
    )
    router = (await get_stats(client, gw))["router"]
    assert (router["routed_in_window"], router["cloud_share"]) == (1, 1.0)


async def test_large_prompt_skips_speculation(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    body = chat("hello", stream=True)
    body["messages"].insert(0, {"role": "system", "content": "rule " * 16_000})
    gw = await speculative(make_gateway)
    reply = await post_stream(client, gw.url, body)
    final = reply.chunks[-1]
    assert "speculative_decoding" not in final
    assert (
        "speculation skipped, the prompt is 97% of a full answer's cost" in final["routing_reason"]
    )
    assert final["routing_reason"].endswith("simple: ~2-token ask, no complexity signal")
    assert len(local_sim.requests) == 1 and cerebras_sim.requests == []
    assert gw.services.stats.get_statistics()["speculative_decoding"]["total_drafts"] == 0


async def test_billed_tokens_equal_what_the_simulators_streamed(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    gw = await speculative(make_gateway)
    # Accepted: Cerebras is cancelled right after its 5th token (the next is 100 ms away).
    script(local_sim, "one", LOCAL)
    script(cerebras_sim, "one", SIMILAR, reasoning="ok so")
    pace(cerebras_sim, tps=10)
    accepted = await post_stream(client, gw.url, chat("one", stream=True))
    assert verdict_of(accepted.chunks[-1])["decided_by"] == "levenshtein"
    assert verdict_of(accepted.chunks[-1])["accepted"] is True
    # Rejected: local is cancelled right after its 5th token (the next is 100 ms away);
    # Cerebras' window is full long before and its answer ends long after (at 1 s).
    script(local_sim, "two", LOCAL)
    script(cerebras_sim, "two", OTHER)
    pace(local_sim, tps=10)
    pace(cerebras_sim, tps=20)
    rejected = await post_stream(client, gw.url, chat("two", stream=True))
    assert verdict_of(rejected.chunks[-1])["decided_by"] == "levenshtein"
    assert verdict_of(rejected.chunks[-1])["accepted"] is False
    for sim in (local_sim, cerebras_sim):
        await eventually(
            lambda sim=sim: all(r.ended_at is not None for r in sim.requests), "every call ended"
        )

    stats = await get_stats(client, gw)
    by_model = stats["tokens"]["by_model"]
    cancelled_verify, finished_verify = cerebras_sim.requests
    finished_draft, cancelled_draft = local_sim.requests
    assert not cancelled_verify.finished and finished_verify.finished
    assert finished_draft.finished and not cancelled_draft.finished
    assert by_model["cerebras"]["completion"] == (
        cancelled_verify.completion_tokens_sent + finished_verify.completion_tokens_sent
    )
    assert by_model["local"]["completion"] == (
        finished_draft.completion_tokens_sent + cancelled_draft.completion_tokens_sent
    )
    # Prompts: exact from usage for finished calls; estimated (and flagged) for cancelled ones.
    assert by_model["cerebras"]["prompt"] == finished_verify.prompt_tokens + estimate_prompt_tokens(
        chat("one")
    )
    assert by_model["local"]["prompt"] == finished_draft.prompt_tokens + estimate_prompt_tokens(
        chat("two")
    )
    spec = stats["speculative_decoding"]
    assert (spec["total_drafts"], spec["total_verifications"]) == (2, 2)
    assert (spec["drafts_accepted"], spec["drafts_rejected"]) == (1, 1)
    assert spec["total_verification_tokens"] == by_model["cerebras"]["completion"]
    assert spec["total_draft_tokens"] == by_model["local"]["completion"]
    costs = stats["costs"]
    billed = (
        by_model["cerebras"]["prompt"] * 2.25 + by_model["cerebras"]["completion"] * 2.75
    ) / 1e6
    assert costs["cerebras_cost_usd"] == pytest.approx(billed, abs=1e-6)
    assert costs["cost_saved_usd"] == pytest.approx(
        costs["counterfactual_cost_usd"] - costs["cerebras_cost_usd"], abs=1e-6
    )
    assert costs["estimated_tokens"] is True


async def test_negative_savings_are_reported(make_gateway, client, local_sim, cerebras_sim) -> None:
    script(local_sim, "p", "yes")
    script(cerebras_sim, "p", " ".join(["abc"] * 100))
    pace(local_sim, ttft=0.3)
    pace(cerebras_sim, tps=100)
    gw = await speculative(make_gateway, max_draft_tokens=50)
    reply = await post_stream(client, gw.url, chat("p", stream=True))
    meta = verdict_of(reply.chunks[-1])
    assert (meta["accepted"], meta["decided_by"]) == (True, "short_draft")
    assert meta["verified_tokens"] > 1  # Cerebras streamed more than the whole accepted answer
    stats = await get_stats(client, gw)
    assert stats["costs"]["cost_saved_usd"] < 0
    assert stats["costs"]["savings_negative"] is True
    assert stats["speculative_decoding"]["tokens_saved"] < 0


async def test_role_chunk_is_sent_before_the_verdict(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    script(local_sim, "p", LOCAL)
    local_sim.hold()  # neither upstream answers: the draft never, Cerebras once released
    release_cerebras = cerebras_sim.hold()
    gw = await speculative(make_gateway)
    async with client.post(gw.url + "/chat/completions", json=chat("p", stream=True)) as resp:
        first = await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 10)
        assert not any(log.first_byte_at for log in local_sim.requests + cerebras_sim.requests)
        release_cerebras.set()  # its whole answer, while the draft has none: verify_complete
        rest = await resp.read()
    assert b'"role":"assistant"' in first
    assert b'"decided_by":"verify_complete"' in rest and rest.endswith(b"data: [DONE]\n\n")


async def test_after_draft_failed_draft_lets_cerebras_answer_alone(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    script(cerebras_sim, "p", OTHER)
    local_sim.inject("http_500")
    gw = await speculative(make_gateway, verify_start="after_draft")
    reply = await post_stream(client, gw.url, chat("p", stream=True))
    assert reply.text == OTHER
    final = reply.chunks[-1]
    meta = verdict_of(final)
    assert (meta["accepted"], meta["decided_by"], meta["verified_tokens"]) == (
        False,
        "draft_failed",
        0,
    )
    assert final["routing_reason"] == (
        "speculative_decoding: no usable draft (draft_failed), cerebras answers"
    )
    record = gw.services.stats.get_statistics()
    assert record["speculative_decoding"]["total_verifications"] == 0
    assert record["tokens"]["by_model"]["cerebras"]["completion"] == len(OTHER.split())


@pytest.mark.parametrize("ttft", [0.0, 0.5])  # role chunk on an upstream's accept / by the timer
async def test_only_the_request_task_writes_to_the_client(
    make_gateway, client, local_sim, cerebras_sim, monkeypatch, ttft: float
) -> None:
    writers: set[asyncio.Task[Any] | None] = set()
    prepare, write = StreamSink._prepare, StreamSink._write_content

    async def watched_prepare(self: StreamSink, first: bytes = b"") -> None:
        writers.add(asyncio.current_task())
        await prepare(self, first)

    async def watched_write(self: StreamSink, data: bytes) -> None:
        writers.add(asyncio.current_task())
        await write(self, data)

    monkeypatch.setattr(StreamSink, "_prepare", watched_prepare)
    monkeypatch.setattr(StreamSink, "_write_content", watched_write)
    script(local_sim, "p", LOCAL)
    script(cerebras_sim, "p", SIMILAR)
    pace(local_sim, ttft=ttft)
    pace(cerebras_sim, tps=20, ttft=ttft)
    gw = await speculative(make_gateway)
    reply = await post_stream(client, gw.url, chat("p", stream=True))
    assert reply.text == LOCAL
    [writer] = writers
    assert writer is not None and writer.get_name() not in {"draft", "verify", "announce"}


async def test_a_slow_client_stops_the_committed_lane_reading(
    make_gateway, client, local_sim, cerebras_sim, monkeypatch
) -> None:
    answer = " ".join(["ab"] * 1200)
    script(local_sim, "p", answer)
    pace(local_sim, tps=1000)
    cerebras_sim.inject("http_500")  # verification fails: the draft is committed
    batches_read = 0
    batches = UpstreamStream.batches

    async def counted(self: UpstreamStream) -> Any:
        nonlocal batches_read
        async for batch in batches(self):
            batches_read += 1
            yield batch

    monkeypatch.setattr(UpstreamStream, "batches", counted)
    blocked, released = asyncio.Event(), asyncio.Event()
    write = StreamSink._write_content

    async def slow_client(self: StreamSink, data: bytes) -> None:
        blocked.set()
        await released.wait()
        await write(self, data)

    monkeypatch.setattr(StreamSink, "_write_content", slow_client)
    gw = await speculative(make_gateway)
    request = asyncio.create_task(post_stream(client, gw.url, chat("p", stream=True)))
    await asyncio.wait_for(blocked.wait(), 5)
    await eventually(lambda: local_sim.requests[0].finished, "the local call finished")
    # The sim wrote every token into the sockets; the gateway read only what the queue holds.
    assert batches_read <= QUEUE_EVENTS + 10, batches_read  # + the window, + one in hand
    released.set()
    reply = await request
    assert reply.text == answer
    assert reply.chunks[-1]["speculative_decoding"]["decided_by"] == "verify_failed"
