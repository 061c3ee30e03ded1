"""The original project's three test prompts (simple, explanation, code) through an in-process
gateway (strategy `speculative_decoding`), reporting the verdict each one got from the final
chunk's metadata."""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from gateway.config import GatewayConfig
from gateway.doctor.options import DoctorOptions
from gateway.doctor.report import Check, fail, ok, skip, warn
from gateway.http.app import create_app
from gateway.http.services import MODEL_ALIAS
from gateway.wire.sse import DONE, SSEDecoder

STRATEGY = "speculative_decoding"
SEED_PROMPTS = (
    ("prompt.simple", "What is 2+2?"),
    ("prompt.complex", "Explain the difference between TCP and UDP, with trade-offs"),
    ("prompt.code", "Write a Python function that reverses a linked list"),
)
NAMES = tuple(name for name, _ in SEED_PROMPTS)
# Verdicts that mean one side could not take part; the other checks say why.
_DRAFT_TROUBLE = ("draft_failed", "draft_empty", "draft_timeout", "draft_refused")
_VERIFY_TROUBLE = ("verify_failed", "verify_refused", "verify_rate_limited", "verify_timeout")


def doctor_gateway_config(
    config: GatewayConfig, workdir: Path, max_tokens: int
) -> GatewayConfig:
    """The real config with strategy speculative_decoding and the ledger and log in `workdir`,
    so the doctor never writes into the user's ledger.

    The draft window is kept below the prompts' `max_tokens`: otherwise every capped draft would
    end "short" (`short_draft`) and the report would never show the windows being compared.
    """
    routing = replace(config.routing, strategy=STRATEGY)
    storage = replace(
        config.storage,
        ledger_path=str(workdir / "doctor_ledger.db"),
        log_path=str(workdir / "doctor.log"),
    )
    spec = config.speculative_decoding
    window = min(spec.max_draft_tokens, max(1, max_tokens // 2))
    speculative = replace(spec, max_draft_tokens=window)
    return replace(config, routing=routing, storage=storage, speculative_decoding=speculative)


async def check_prompts(config: GatewayConfig, options: DoctorOptions) -> list[Check]:
    """Start the gateway on a free 127.0.0.1 port, ask each prompt once, stop it."""
    with tempfile.TemporaryDirectory(prefix="glm-doctor-") as tmp:
        app = create_app(
            doctor_gateway_config(config, Path(tmp), options.prompt_max_tokens)
        )
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = int(runner.addresses[0][1])
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            headers = {"Content-Type": "application/json"}
            if config.auth.api_keys:
                headers["Authorization"] = f"Bearer {config.auth.api_keys[0]}"
            async with aiohttp.ClientSession() as session:
                return [
                    await _ask(session, url, headers, name, prompt, options)
                    for name, prompt in SEED_PROMPTS
                ]
        finally:
            await runner.cleanup()


def skipped_prompts(why: str) -> list[Check]:
    return [skip(name, why) for name in NAMES]


async def _ask(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    name: str,
    prompt: str,
    options: DoctorOptions,
) -> Check:
    body = {
        "model": MODEL_ALIAS,
        "messages": [{"role": "user", "content": prompt}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": options.prompt_max_tokens,
    }
    started = time.monotonic()
    fix = "see the local.* and cerebras.* checks above"
    try:
        async with asyncio.timeout(options.probe_timeout):
            async with session.post(url, data=orjson.dumps(body), headers=headers) as resp:
                status, raw = resp.status, await resp.read()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        why = (
            f"no answer within {options.probe_timeout:g}s"
            if isinstance(exc, TimeoutError)
            else (type(exc).__name__)
        )
        return fail(name, f"{prompt!r}: the in-process gateway failed: {why}", fix)
    seconds = time.monotonic() - started
    if status != 200:
        return fail(name, f"{prompt!r}: the gateway answered HTTP {status}: {_message(raw)}", fix)
    chunks, done = _chunks(raw)
    errors = [c["error"] for c in chunks if "error" in c]
    if errors or not done:
        why = _message(orjson.dumps({"error": errors[0]})) if errors else "no [DONE]"
        return fail(name, f"{prompt!r}: the stream broke off: {why}", fix)
    final = next((c for c in reversed(chunks) if "model_used" in c), None)
    if final is None:
        return fail(name, f"{prompt!r}: no model_used on the final chunk", fix)
    return _verdict(name, prompt, final, seconds)


def _verdict(name: str, prompt: str, final: dict[str, Any], seconds: float) -> Check:
    spec = final.get("speculative_decoding")
    model_used = final.get("model_used")
    figures: dict[str, Any] = {
        "prompt": prompt,
        "model_used": model_used,
        "routing_reason": final.get("routing_reason"),
        "seconds": round(seconds, 2),
    }
    if not isinstance(spec, dict):
        return warn(
            name,
            f"{prompt!r}: model_used {model_used}, no speculation ({final.get('routing_reason')})",
            "check speculative_decoding.enabled and cost_skip_ratio",
            **figures,
        )
    for key in ("draft_tokens", "verified_tokens", "decided_by", "similarity", "accepted"):
        figures[key] = spec.get(key)
    decided_by = str(spec.get("decided_by"))
    similarity = spec.get("similarity")
    similar = f"{similarity:.2f}" if isinstance(similarity, int | float) else "n/a"
    detail = (
        f"{prompt!r}: model_used {model_used}, draft {spec.get('draft_tokens')} / verified "
        f"{spec.get('verified_tokens')} tokens, decided_by {decided_by}, similarity {similar}, "
        f"{seconds:.1f}s"
    )
    if decided_by in _DRAFT_TROUBLE:
        fix = "the local draft did not take part: see the local.* checks"
        return warn(name, detail, fix, **figures)
    if decided_by in _VERIFY_TROUBLE:
        return warn(name, detail, "Cerebras did not verify: see the cerebras.* checks", **figures)
    return ok(name, detail, **figures)


def _chunks(raw: bytes) -> tuple[list[dict[str, Any]], bool]:
    """The JSON chunks of an SSE body, and whether it ended with [DONE]."""
    decoder = SSEDecoder()
    payloads = decoder.feed(raw) + decoder.close()
    chunks: list[dict[str, Any]] = []
    for payload in payloads:
        if payload == DONE:
            return chunks, True
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if isinstance(chunk, dict):
            chunks.append(chunk)
    return chunks, False


def _message(raw: bytes) -> str:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:200].decode("utf-8", "replace")
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message) if message else raw[:200].decode("utf-8", "replace")
