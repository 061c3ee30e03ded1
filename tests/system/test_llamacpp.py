"""Integration tests against a real llama.cpp `llama-server` (marker `llamacpp`).

One llama-server with Gemma 3 270M (installed by scripts/setup_local_model.sh) runs for the whole
session on a free 127.0.0.1 port with one slot; a second one with a 256-token context serves the
context-overflow tests, and the loading test starts and stops its own. Every request goes through
the gateway; Cerebras is the simulator. Sampling is greedy with a fixed seed wherever a test
compares texts.

When llama-server cannot be had (no compiler, pip failure: the setup script says why) every test
here skips with that reason; GLM_REQUIRE_LLAMACPP=1 turns the skip into a failure, and
GLM_SKIP_LLAMACPP=1 skips on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from llamacpp_support import (
    GREEDY,
    STARTUP_TIMEOUT_S,
    UpstreamTap,
    llama_direct,
    running_llama,
    slot_state,
    stream_text,
    timings_of,
    token_logprobs,
    wait_slots_idle,
)
from openai import AsyncOpenAI, BadRequestError
from support import Gateway, GatewayFactory, chat, gateway_config, post_stream, start_gateway

from gateway.dev.llama_server import LlamaServer, free_port
from gateway.dev.sim import ScriptedAnswer, SimServer
from gateway.router.answer import logprob_confidence
from gateway.upstreams import LeanPool, build_upstream
from gateway.upstreams.client import DNS_CACHE_S, STALE_LIMIT, UpstreamConnector

pytestmark = pytest.mark.llamacpp

TINY_CTX = 256


LONG_ANSWER = 400  # tokens: ~10 s of decoding on 2 cores, what an abandoned answer would cost


# Generous next to the ~35 tokens/s a 2-core machine does, small next to the 120 s test timeout.
TIMEOUTS = {"connect": 2, "first_token": 30, "idle": 15}


@pytest.fixture(scope="session")
def tiny_llama_server(
    llama_install: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LlamaServer]:
    """A llama-server with a 256-token context, for overflow errors."""
    log_dir = tmp_path_factory.mktemp("llama-tiny")
    with running_llama(llama_install, log_dir, ctx=TINY_CTX) as server:
        yield server


@pytest.fixture
def real_gateway(
    aiohttp_server: Any, tmp_path: Path, llama_server: LlamaServer, cerebras_sim: SimServer
) -> GatewayFactory:
    """Start a gateway on 127.0.0.1: local = the session llama-server (or `local_url`),
    Cerebras = the simulator; keyword sections override the config as in `gateway_config`."""

    async def factory(
        strategy: str = "always_local", *, local_url: str | None = None, **sections: Any
    ) -> Gateway:
        sections.setdefault("timeouts", TIMEOUTS)
        config = gateway_config(
            tmp_path,
            local_url or llama_server.url,
            cerebras_sim.url,
            strategy=strategy,
            **sections,
        )
        return await start_gateway(aiohttp_server, config)

    return factory


@pytest.fixture
async def llama_tap(llama_server: LlamaServer) -> AsyncIterator[UpstreamTap]:
    """A recording proxy in front of the session llama-server."""
    tap = UpstreamTap(llama_server.root)
    await tap.start()
    try:
        yield tap
    finally:
        await tap.close()


def final_chunk(payloads: list[Any]) -> dict[str, Any]:
    """The last JSON chunk before [DONE]: where the gateway puts its metadata."""
    assert payloads and payloads[-1] == "[DONE]", payloads[-3:]
    last: dict[str, Any] = payloads[-2]
    return last


async def test_openai_client_reads_stream_with_llamacpp_usage(real_gateway, llama_tap):
    """The openai client reads the stream in pieces, one usage object, and that usage is
    llama.cpp's own count (its `timings`, seen on the wire by the tap)."""
    gw = await real_gateway("always_local", local_url=llama_tap.url)
    client = AsyncOpenAI(base_url=gw.url, api_key="unused", max_retries=0)
    try:
        stream = await client.chat.completions.create(
            model="glm-token-saver",
            messages=[{"role": "user", "content": "Name three colours of the rainbow."}],
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=24,
            **GREEDY,
        )
        pieces, usages, finishes = [], [], []
        async for chunk in stream:
            if chunk.usage is not None:
                usages.append(chunk.usage)
            for choice in chunk.choices:
                if choice.delta.content:
                    pieces.append(choice.delta.content)
                if choice.finish_reason:
                    finishes.append(choice.finish_reason)
    finally:
        await client.close()

    assert len(pieces) >= 3, f"text should arrive in pieces, got {pieces!r}"
    assert "".join(pieces).strip()
    assert len(finishes) == 1 and finishes[0] in ("stop", "length")
    assert len(usages) == 1, "exactly one usage object"
    (record,) = llama_tap.chat_records()
    assert record.status == 200
    upstream = record.payloads
    assert upstream[-1] == "[DONE]"
    timings = timings_of(upstream)
    usage = usages[0]
    assert usage.completion_tokens == timings["predicted_n"]
    assert usage.prompt_tokens == timings["prompt_n"] + timings.get("cache_n", 0)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert "".join(pieces) == stream_text(upstream)


async def test_always_local_relays_llamacpp_verbatim(real_gateway, llama_server, cerebras_sim):
    """always_local: the client stream is llama.cpp's greedy answer, token for token, in the
    gateway's wire format (role first, one id, usage then one [DONE]); Cerebras untouched."""
    body = chat("Write one sentence about the sea.", stream=True, max_tokens=32, **GREEDY)
    body["stream_options"] = {"include_usage": True}
    direct = await llama_direct(llama_server.root, body)
    assert direct.status == 200
    gw = await real_gateway("always_local")
    async with aiohttp.ClientSession() as session:
        reply = await post_stream(session, gw.url, body)

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    assert reply.headers["x-gateway-model-used"] == "local"
    payloads = reply.data
    assert payloads.count("[DONE]") == 1 and payloads[-1] == "[DONE]"
    chunks = reply.chunks
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len({c["id"] for c in chunks}) == 1
    assert all("timings" not in c for c in chunks), "llama.cpp's timings stay inside"
    usage_chunks = [c for c in chunks if c.get("usage")]
    assert usage_chunks == [chunks[-1]] and chunks[-1]["choices"] == []
    assert final_chunk(payloads)["model_used"] == "local"
    # Greedy decoding: the gateway's text is llama.cpp's own, token for token.
    assert reply.text == direct.text and reply.text.strip()
    assert chunks[-1]["usage"]["completion_tokens"] == timings_of(direct.payloads)["predicted_n"]
    assert cerebras_sim.requests == []


async def test_smart_routing_sends_simple_ask_to_llamacpp(real_gateway, cerebras_sim):
    """smart_routing: a simple ask is answered by the real llama.cpp, a complex one by Cerebras."""
    gw = await real_gateway("smart_routing")
    async with aiohttp.ClientSession() as session:
        simple = await post_stream(
            session,
            gw.url,
            chat("What is the capital of France?", stream=True, max_tokens=16, **GREEDY),
        )
        assert simple.status == 200
        assert simple.headers["x-gateway-model-used"] == "local"
        assert simple.text.strip()
        assert cerebras_sim.requests == []

        complex_ask = "Refactor this module and debug the algorithm that fails, step by step."
        hard = await post_stream(session, gw.url, chat(complex_ask, stream=True, max_tokens=16))
    assert hard.status == 200
    assert hard.headers["x-gateway-model-used"] == "cerebras"
    assert len(cerebras_sim.requests) == 1


MAX_DRAFT_TOKENS = 8


SPECULATIVE = {
    "max_draft_tokens": MAX_DRAFT_TOKENS,
    "min_confidence": 0.6,
    "draft_timeout": 30,
    "parallel_enabled": False,
}


SPEC_PROMPT = "Describe the sea in three sentences."


SPEC_MAX_TOKENS = 32  # a draft well past the 8-token window, and quick to generate


# A verifier answer that shares nothing with any English draft; long enough (about 7 s at 15
# tokens/s) that a draft starved of CPU still fills its window before the verifier finishes.
UNRELATED = " ".join(["ZQX"] * 100)


def slow_verifier(sim: SimServer, answer: str, tps: float) -> None:
    """Script the simulated Cerebras to stream `answer` at `tps` tokens/s after 0.3 s: its 8-token
    window is ready in a second or two, its whole answer takes several, so the verdict compares
    windows instead of taking a finished verify answer (`verify_complete`)."""
    sim.options.script = {"*": ScriptedAnswer(content=answer)}
    sim.options.ttft = 0.3
    sim.options.tps = tps


async def _greedy_draft(root: str, max_tokens: int = SPEC_MAX_TOKENS) -> str:
    """What llama-server (at `root`) itself answers SPEC_PROMPT with greedy sampling."""
    direct = await llama_direct(root, chat(SPEC_PROMPT, max_tokens=max_tokens, **GREEDY))
    assert direct.status == 200
    produced = timings_of(direct.payloads)["predicted_n"]
    assert produced > MAX_DRAFT_TOKENS, "the draft must outgrow the window to need a verdict"
    return direct.text


def _speculative_meta(payloads: list[Any]) -> dict[str, Any]:
    final = final_chunk(payloads)
    meta = final.get("speculative_decoding")
    assert isinstance(meta, dict), f"no speculative_decoding metadata on {final}"
    return meta


async def test_speculative_accepts_real_draft_when_verifier_agrees(
    real_gateway, llama_server, cerebras_sim
):
    """speculative_decoding, accept path: the verifier agrees with the real greedy draft; the
    client gets the draft once, in order, and the verify stream is cancelled at the verdict."""
    draft = await _greedy_draft(llama_server.root)
    # Cancelled at the verdict, so slow costs nothing; slow enough that a draft starved of CPU
    # still fills its window before the verifier has finished (else `verify_complete` decides).
    slow_verifier(cerebras_sim, draft, tps=3.0)
    gw = await real_gateway("speculative_decoding", speculative_decoding=SPECULATIVE)
    async with aiohttp.ClientSession() as session:
        reply = await post_stream(
            session, gw.url, chat(SPEC_PROMPT, stream=True, max_tokens=SPEC_MAX_TOKENS, **GREEDY)
        )

    assert reply.status == 200
    assert reply.text == draft, "the client gets the local draft, once, in order"
    final = final_chunk(reply.data)
    assert final["model_used"] == "local"
    meta = _speculative_meta(reply.data)
    assert meta["accepted"] is True and meta["spilled_over"] is False
    assert meta["decided_by"] == "levenshtein"
    assert meta["similarity"] >= SPECULATIVE["min_confidence"]
    (verify,) = cerebras_sim.requests
    assert not verify.finished, "the verify stream was cancelled at the verdict"


async def test_speculative_rejects_real_draft_and_frees_llamacpp(
    real_gateway, llama_server, cerebras_sim
):
    """speculative_decoding, reject path: the verifier disagrees; the client gets Cerebras's answer
    once, in order, and the real draft is cancelled at the verdict (its slot frees at once)."""
    slow_verifier(cerebras_sim, UNRELATED, tps=15.0)  # the client waits for all of it
    gw = await real_gateway("speculative_decoding", speculative_decoding=SPECULATIVE)
    # A long draft: had it not been cancelled at the verdict, llama.cpp would generate for ~10 s.
    body = chat(SPEC_PROMPT, stream=True, max_tokens=400, ignore_eos=True, **GREEDY)
    async with aiohttp.ClientSession() as session:
        reply = await post_stream(session, gw.url, body)

    assert reply.status == 200
    assert reply.text == UNRELATED, "the client gets the verifier's answer, once, in order"
    assert final_chunk(reply.data)["model_used"] == "cerebras"
    meta = _speculative_meta(reply.data)
    assert meta["accepted"] is False and meta["spilled_over"] is True
    assert meta["decided_by"] == "levenshtein"
    assert meta["similarity"] < SPECULATIVE["min_confidence"]
    assert meta["draft_tokens"] < 100, "the draft was cut at the verdict, not run to 400 tokens"
    # The draft's llama.cpp slot is free again (it would be busy for ~10 s more otherwise).
    assert await wait_slots_idle(llama_server.root, timeout=3.0) < 3.0


# The logprob signal (gateway.config.SpeculativeConfig): token probabilities, not logprobs. A
# threshold of 0 is always cleared; 1 never is by a real draft (some token is below certainty).
LOW_QUANTILE = 0.1


LOGPROB_ALWAYS_CONFIDENT = {"logprob_min_mean": 0.0, "logprob_min_low": 0.0}


LOGPROB_NEVER_CONFIDENT = {"logprob_min_mean": 1.0, "logprob_min_low": 1.0}


_LOGGED_CONFIDENCE = re.compile(r"draft token probability: mean ([0-9.]+), p\d+ ([0-9.]+)")


@pytest.mark.parametrize("confident", [True, False], ids=["accepted-locally", "verified"])
async def test_speculative_logprob_signal_uses_real_llamacpp_logprobs(
    real_gateway, llama_tap, cerebras_sim, caplog, confident
):
    """after_draft with the logprob signal: the draft asks llama.cpp for logprobs, the verdict's
    confidence is computed from those real logprobs, and a confident draft never calls Cerebras."""
    caplog.set_level(logging.INFO, logger="gateway.speculation")
    draft_text = await _greedy_draft(llama_tap.target)
    cerebras_sim.options.script = {"*": ScriptedAnswer(content=draft_text)}
    thresholds = LOGPROB_ALWAYS_CONFIDENT if confident else LOGPROB_NEVER_CONFIDENT
    section = {
        **SPECULATIVE,
        "verify_start": "after_draft",
        "logprob_signal": True,
        "logprob_low_quantile": LOW_QUANTILE,
        **thresholds,
    }
    gw = await real_gateway(
        "speculative_decoding", local_url=llama_tap.url, speculative_decoding=section
    )
    llama_tap.records.clear()
    async with aiohttp.ClientSession() as session:
        reply = await post_stream(
            session, gw.url, chat(SPEC_PROMPT, stream=True, max_tokens=SPEC_MAX_TOKENS, **GREEDY)
        )

    assert reply.status == 200
    (draft,) = llama_tap.chat_records()
    assert draft.request_json.get("logprobs") is True, "the draft asks llama.cpp for logprobs"
    logprobs = token_logprobs(draft.payloads)
    assert logprobs and all(lp <= 0.0 for lp in logprobs), "real per-token logprobs came back"
    leaked = [c for c in reply.chunks for ch in c["choices"] if ch.get("logprobs")]
    assert leaked == [], "logprobs the client did not ask for stay inside the gateway"
    # The verdict's signal is computed from exactly these logprobs: those of the window's tokens.
    logged = [m for r in caplog.records if (m := _LOGGED_CONFIDENCE.search(r.getMessage()))]
    assert len(logged) == 1, "one logprob verdict"
    mean, low = float(logged[0][1]), float(logged[0][2])
    prefixes = [logprob_confidence(logprobs[:k], LOW_QUANTILE) for k in range(1, len(logprobs) + 1)]
    assert any(abs(m - mean) < 6e-4 and abs(q - low) < 6e-4 for m, q in prefixes), (mean, low)
    meta = _speculative_meta(reply.data)
    if confident:
        assert "logprob" in str(meta.get("decided_by")), meta
        assert cerebras_sim.requests == [], "after_draft: no Cerebras call when logprobs accept"
        assert reply.text == draft_text
    else:
        assert "logprob" not in str(meta.get("decided_by")), meta
        assert len(cerebras_sim.requests) == 1, "unconfident logprobs send the draft to verify"


async def test_client_disconnect_frees_llamacpp_slot(real_gateway, llama_server):
    """A client leaving mid-stream frees llama.cpp's only slot at once (/slots goes idle with most
    of the answer undecoded), and the next request is served without waiting for it."""
    root = llama_server.root
    gw = await real_gateway("always_local")
    long_body = chat(
        "Count from 1 to 1000, one number per line.",
        stream=True,
        max_tokens=LONG_ANSWER,
        ignore_eos=True,
        **GREEDY,
    )
    async with aiohttp.ClientSession() as session:
        resp = await session.post(gw.url + "/chat/completions", json=long_body)
        assert resp.status == 200
        async for line in resp.content:
            if line.startswith(b"data: {") and b'"content":"' in line:
                break
        # llama.cpp's own decoding speed, from its slot, over half a second.
        before, t0 = await slot_state(root), time.monotonic()
        await asyncio.sleep(0.5)
        after, t1 = await slot_state(root), time.monotonic()
        assert before.busy and after.busy, "llama.cpp is generating the long answer"
        rate = max(after.n_decoded - before.n_decoded, 1) / (t1 - t0)
        assert after.n_remain > LONG_ANSWER / 2, "most of the answer is still to come"
        resp.close()  # the client goes away mid-stream

        abandoned_s = after.n_remain / rate  # what finishing the abandoned answer would take
        freed_after = await wait_slots_idle(root, timeout=min(5.0, abandoned_s / 2))
        started = time.monotonic()
        second = await post_stream(
            session, gw.url, chat("Say hi.", stream=True, max_tokens=8, **GREEDY)
        )
        second_s = time.monotonic() - started

    assert freed_after < abandoned_s / 4, (freed_after, abandoned_s)
    assert second.status == 200 and second.text.strip()
    assert second_s < abandoned_s / 2, f"second request took {second_s:.1f}s"


async def test_gateway_health_shows_llamacpp_loading(real_gateway, llama_install, tmp_path, client):
    """While llama-server loads its model, the gateway's /health shows local as `loading` with
    llama.cpp's wording, then `ok`."""
    binary, model = llama_install
    server = LlamaServer(
        binary, model, port=free_port(), ctx=TINY_CTX, log_path=tmp_path / "llama-loading.log"
    )
    gw = await real_gateway("always_local", local_url=server.url)
    seen: list[tuple[str, str]] = []
    server.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            async with client.get(gw.root + "/health") as resp:
                body = await resp.json()
            local = body["upstreams"]["local"]
            seen.append((local["state"], local.get("detail", "")))
            if local["state"] == "ok":
                break
            await asyncio.sleep(0.02)
    finally:
        server.stop()

    states = [state for state, _ in seen]
    assert states[-1] == "ok", seen[-5:]
    loading = [detail for state, detail in seen if state == "loading"]
    assert loading, f"never saw the loading state: {sorted(set(states))}"
    assert loading[0] == "Loading model", "llama.cpp's own wording"
    assert set(states) <= {"down", "loading", "ok"}
    first_loading = states.index("loading")
    assert "down" not in states[first_loading:], "once it answers, it loads, then it is ok"


OVERFLOW_PROMPT = "hello " * 400  # about 400 tokens, well past a 256-token context


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
async def test_llamacpp_context_overflow_reaches_client_verbatim(
    real_gateway, tiny_llama_server, cerebras_sim, stream
):
    """llama.cpp's context-overflow error (tiny -c) reaches the client with its status, type and
    message unchanged when fallback is off, for raw HTTP and for the openai client."""
    body = chat(OVERFLOW_PROMPT, stream=stream, max_tokens=8, **GREEDY)
    direct = await llama_direct(tiny_llama_server.root, body)
    assert direct.status == 400
    upstream_error = direct.json["error"]
    assert upstream_error["type"] == "exceed_context_size_error"

    gw = await real_gateway(
        "always_local",
        local_url=tiny_llama_server.url,
        routing={"fallback": {"to_cerebras": False}},
    )
    async with aiohttp.ClientSession() as session:
        async with session.post(gw.url + "/chat/completions", json=body) as resp:
            status = resp.status
            error = (await resp.json())["error"]
    assert status == 400
    assert error["message"] == upstream_error["message"]
    assert error["type"] == "exceed_context_size_error"
    assert cerebras_sim.requests == []

    client = AsyncOpenAI(base_url=gw.url, api_key="unused", max_retries=0)
    try:
        with pytest.raises(BadRequestError) as raised:
            await client.chat.completions.create(
                model="glm-token-saver",
                messages=body["messages"],
                stream=stream,
                max_tokens=8,
            )
    finally:
        await client.close()
    assert raised.value.status_code == 400
    assert upstream_error["message"] in str(raised.value)


async def test_llamacpp_context_overflow_falls_back_to_cerebras(
    real_gateway, tiny_llama_server, cerebras_sim
):
    """With fallback on (the default), a context overflow on llama.cpp is served by Cerebras."""
    cerebras_sim.options.script = {"*": ScriptedAnswer(content="Served by the bigger context.")}
    gw = await real_gateway("always_local", local_url=tiny_llama_server.url)
    async with aiohttp.ClientSession() as session:
        reply = await post_stream(session, gw.url, chat(OVERFLOW_PROMPT, stream=True))
    assert reply.status == 200
    assert reply.headers["x-gateway-model-used"] == "cerebras"
    assert reply.text == "Served by the bigger context."
    assert len(cerebras_sim.requests) == 1


def counting_session() -> tuple[aiohttp.ClientSession, Counter[str]]:
    """The gateway's pooled upstream session, with a count of new and reused connections and of
    failed attempts (a stale connection's first try)."""
    counts: Counter[str] = Counter()

    def count(what: str) -> Callable[..., Awaitable[None]]:
        async def hook(*_: Any) -> None:
            counts[what] += 1

        return hook

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(count("new connections"))
    trace.on_connection_reuseconn.append(count("reused connections"))
    trace.on_request_exception.append(count("failed attempts"))
    connector = UpstreamConnector(limit=0, ttl_dns_cache=DNS_CACHE_S)
    return aiohttp.ClientSession(connector=connector, trace_configs=[trace]), counts


@pytest.mark.parametrize("lean", [False, True], ids=["aiohttp", "lean"])
async def test_pooled_streams_back_to_back_and_concurrent_all_succeed(
    llama_server: LlamaServer, tmp_path: Path, lean: bool
) -> None:
    """llama-server advertises keep-alive but may close the connection after a streamed answer.
    The gateway pools its connections all the same and sends a call that met such a closed
    connection (before any byte of an answer) once more on a new one: calls back to back, three
    at once (the server has one slot: more would wait past the first-token timeout on a busy
    machine) and back to back again all succeed, none goes to the paid fallback. This server
    closes every streamed connection, so after a few such calls the upstream stops pooling.
    Both clients: the aiohttp session, and the lean client the gateway uses for plain http."""
    config = gateway_config(tmp_path, llama_server.url, "http://127.0.0.1:9/v1", timeouts=TIMEOUTS)
    body = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 4, **GREEDY}
    session, counts = counting_session()
    pool = LeanPool() if lean else None

    async def one() -> None:
        async with local.open_stream(body, role="answer") as stream:
            async for _batch in stream.batches():
                pass
        assert stream.saw_done
        assert stream.call.status == "ok"

    async with session:
        local = build_upstream(
            "local", config.models["local"], session, max_event_bytes=1 << 20, pool=pool
        )
        try:
            for _ in range(6):
                await one()
            await asyncio.gather(*(one() for _ in range(3)))
            for _ in range(4):
                await one()
                await asyncio.sleep(0.05)  # time for a close the server sent to arrive
        finally:
            if pool is not None:
                await pool.close()
    # What the server did with kept-alive connections (the counts depend on timing).
    if lean:
        assert not counts  # the session was not used
        counts["stale connections"] = local.reuse.stale
        counts["answered on a reused connection"] = local.reuse.answered
    print(f"llama-server connections over 13 streamed calls: {dict(counts)}")
    assert local.reuse.stale <= STALE_LIMIT or local.reuse.answered > 0
    if not lean:
        assert counts["failed attempts"] <= STALE_LIMIT or local.reuse.answered > 0


async def test_the_gateway_serves_back_to_back_turns_locally(
    real_gateway, llama_server, cerebras_sim
) -> None:
    """Through the gateway, turns back to back and concurrent are all answered by llama.cpp."""
    gw = await real_gateway("always_local")
    body = chat("Say hi", stream=True, max_tokens=4, **GREEDY)
    async with aiohttp.ClientSession() as session:
        replies = [await post_stream(session, gw.url, body) for _ in range(6)]
        replies += await asyncio.gather(*(post_stream(session, gw.url, body) for _ in range(3)))
    assert [r.status for r in replies] == [200] * 9
    assert {r.headers["x-gateway-model-used"] for r in replies} == {"local"}
    assert all(r.data[-1] == "[DONE]" for r in replies)
    assert cerebras_sim.requests == []


async def test_cerebras_cut_mid_answer_is_continued_by_llamacpp(
    real_gateway, llama_tap, cerebras_sim, client
) -> None:
    """A simulated Cerebras cut after three tokens: the real llama-server continues the partial
    text (assistant prefill), its echo of the prefill is stripped, and the usage adds up."""
    cerebras_sim.options.script = {
        "*": ScriptedAnswer(content="Counting: one two three four five six seven eight nine")
    }
    cerebras_sim.inject("cut", after_chunks=4)  # the role chunk and three tokens
    gw = await real_gateway("always_cerebras", local_url=llama_tap.url)
    body = chat(
        "Count from one to twenty in words.",
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=24,
        **GREEDY,
    )
    reply = await post_stream(client, gw.url, body)
    final = final_chunk(reply.data)
    prefill = "Counting: one two"
    assert final["continued"]["from"] == "cerebras" and final["model_used"] == "local"

    (record,) = llama_tap.chat_records()
    assert record.request_json["messages"][-1] == {"role": "assistant", "content": prefill}
    raw = [
        p["choices"][0]["delta"].get("content") or ""
        for p in record.payloads
        if isinstance(p, dict) and p.get("choices")
    ]
    first = next(t for t in raw if t)
    assert first.startswith(prefill) and len(first) > len(prefill), "llama-server echoes"
    added = "".join(raw)[len(prefill) :]
    assert added.strip(), "llama.cpp added text"
    assert reply.text == prefill + added, "no repeated and no missing text at the seam"

    usage = [c["usage"] for c in reply.chunks if c.get("usage")]
    assert len(usage) == 1
    llama_usage = next(
        p["usage"] for p in record.payloads if isinstance(p, dict) and p.get("usage")
    )
    at = final["continued"]["at_tokens"]
    assert usage[0]["completion_tokens"] == at + llama_usage["completion_tokens"]
    assert usage[0]["prompt_tokens"] > llama_usage["prompt_tokens"]
    assert usage[0]["total_tokens"] == usage[0]["prompt_tokens"] + usage[0]["completion_tokens"]
    ledger = gw.services.ledger
    await ledger.flush()
    (row,) = ledger.rows()
    assert row.outcome == "ok" and row.model_used == "local"
    assert row.local_completion_tokens == llama_usage["completion_tokens"]
    assert row.cerebras_completion_tokens == at
