"""Wire dialects: how llama.cpp and Cerebras frame chunks, final answers and errors.

A dialect instance encodes one response (fixed id, created, model); its class methods build error
bodies, which differ in shape: llama.cpp nests `{"error": {code, message, type}}`, Cerebras sends a
flat `{message, type, param, code}`.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from gateway.dev.sim.options import Profile
from gateway.dev.sim.text import FinishReason, Piece

JSON = dict[str, Any]
DONE = b"data: [DONE]\n\n"
_ALTERNATIVES = ("the", "a", "of", "and", "to", "in", "is", "it", "that", "for", "on", "with")


@dataclass(slots=True)
class ErrorReply:
    status: int
    body: JSON


@dataclass(slots=True)
class Stats:
    """Token counts and seconds measured for one response."""

    prompt_tokens: int
    completion_tokens: int
    prompt_seconds: float
    completion_seconds: float
    cached_tokens: int = 0

    def usage(self) -> JSON:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def _sse(obj: JSON) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _lp_entry(token: str, logprob: float) -> JSON:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


class Dialect:
    """Encodes the chunks of one response. `top_logprobs` None means logprobs were not asked."""

    profile: ClassVar[Profile]
    reasoning_key: ClassVar[str]
    fingerprint: ClassVar[str]

    def __init__(self, model: str, top_logprobs: int | None = None, logprob: float = 0.0) -> None:
        self.model = model
        self.id = "chatcmpl-" + secrets.token_hex(16)
        self.created = int(time.time())
        self.top_logprobs = top_logprobs
        self.logprob = logprob
        self._tail: JSON = {
            "created": self.created,
            "model": model,
            "system_fingerprint": self.fingerprint,
            "object": "chat.completion.chunk",
        }

    # --- chunks -------------------------------------------------------------------------------
    def _choice(self, delta: JSON) -> JSON:
        raise NotImplementedError

    def _chunk(self, choices: list[JSON], **extra: Any) -> bytes:
        raise NotImplementedError

    def role(self) -> bytes:
        raise NotImplementedError

    def piece(self, p: Piece) -> bytes:
        """One chunk carrying one token."""
        if p.kind == "content":
            choice = self._choice({"content": p.text})
            if self.top_logprobs is not None:
                choice["logprobs"] = {"content": [self.logprobs_entry(p.text)]}
            return self._chunk([choice])
        if p.kind == "reasoning":
            return self._chunk([self._choice({self.reasoning_key: p.text})])
        if p.kind == "tool_head":
            call = {
                "index": p.call_index,
                "id": p.call_id,
                "type": "function",
                "function": {"name": p.text, "arguments": ""},
            }
        else:
            call = {"index": p.call_index, "function": {"arguments": p.text}}
        return self._chunk([self._choice({"tool_calls": [call]})])

    def logprobs_entry(self, token: str) -> JSON:
        entry = _lp_entry(token, self.logprob)
        top = [_lp_entry(token, self.logprob)]
        space = " " if token.startswith(" ") else ""
        for word in _ALTERNATIVES:
            if len(top) >= (self.top_logprobs or 0):
                break
            if space + word != token:
                top.append(_lp_entry(space + word, self.logprob - float(len(top))))
        entry["top_logprobs"] = top[: self.top_logprobs or 0]
        return entry

    def final(self, finish: FinishReason, stats: Stats) -> bytes:
        raise NotImplementedError

    def usage(self, stats: Stats) -> bytes:
        raise NotImplementedError

    def error_event(self, reply: ErrorReply) -> bytes:
        """An error sent inside an already started stream."""
        body = reply.body if "error" in reply.body else {"error": reply.body}
        return _sse(body)

    # --- non-stream ---------------------------------------------------------------------------
    def completion(self, pieces: list[Piece], finish: FinishReason, stats: Stats) -> JSON:
        raise NotImplementedError

    def _completion_choice(self, pieces: list[Piece], finish: FinishReason) -> JSON:
        message, logprobs = self._message_and_logprobs(pieces)
        choice: JSON = {"finish_reason": finish, "index": 0, "message": message}
        if logprobs is not None:
            choice["logprobs"] = logprobs
        return choice

    def _message_and_logprobs(self, pieces: list[Piece]) -> tuple[JSON, JSON | None]:
        content = "".join(p.text for p in pieces if p.kind == "content")
        reasoning = "".join(p.text for p in pieces if p.kind == "reasoning")
        calls: list[JSON] = []
        for p in pieces:
            if p.kind == "tool_head":
                calls.append(
                    {
                        "id": p.call_id,
                        "type": "function",
                        "function": {"name": p.text, "arguments": ""},
                    }
                )
            elif p.kind == "tool_args":
                calls[p.call_index]["function"]["arguments"] += p.text
        message: JSON = {"role": "assistant", "content": content if content or not calls else None}
        if reasoning:
            message[self.reasoning_key] = reasoning
        if calls:
            message["tool_calls"] = calls
        logprobs = None
        if self.top_logprobs is not None:
            logprobs = {
                "content": [self.logprobs_entry(p.text) for p in pieces if p.kind == "content"]
            }
        return message, logprobs

    # --- errors -------------------------------------------------------------------------------
    @classmethod
    def error(
        cls, status: int, message: str, type_: str, code: str | None = None, **extra: Any
    ) -> ErrorReply:
        raise NotImplementedError

    @classmethod
    def server_error(cls) -> ErrorReply:
        return cls.error(500, "Internal server error", "server_error")

    @classmethod
    def bad_request(cls, message: str, param: str | None = None) -> ErrorReply:
        return cls.error(400, message, "invalid_request_error", param=param)

    @classmethod
    def unauthorized(cls) -> ErrorReply:
        raise NotImplementedError

    @classmethod
    def rate_limited(cls, code: str) -> ErrorReply:
        raise NotImplementedError

    @classmethod
    def context_overflow(cls, prompt_tokens: int, n_ctx: int) -> ErrorReply:
        raise NotImplementedError

    @staticmethod
    def loading() -> ErrorReply:
        """llama.cpp's answer while the model loads (also used by the http_503_loading fault)."""
        return ErrorReply(
            503, {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
        )

    @classmethod
    def models(cls, model: str, n_ctx: int) -> JSON:
        raise NotImplementedError


class LlamaCpp(Dialect):
    profile = "llamacpp"
    reasoning_key = "reasoning_content"
    fingerprint = "b4000-sim"

    def _choice(self, delta: JSON) -> JSON:
        return {"finish_reason": None, "index": 0, "delta": delta}

    def __init__(self, model: str, top_logprobs: int | None = None, logprob: float = 0.0) -> None:
        super().__init__(model, top_logprobs, logprob)
        self._chunk_tail: JSON = {"created": self.created, "id": self.id, **self._tail}

    def _chunk(self, choices: list[JSON], **extra: Any) -> bytes:
        return _sse({"choices": choices, **self._chunk_tail, **extra})

    def role(self) -> bytes:
        return self._chunk([self._choice({"role": "assistant", "content": None})])

    def timings(self, stats: Stats) -> JSON:
        predicted_ms = stats.completion_seconds * 1000.0
        return {
            "prompt_n": stats.prompt_tokens,
            "prompt_ms": stats.prompt_seconds * 1000.0,
            "predicted_n": stats.completion_tokens,
            "predicted_ms": predicted_ms,
            "predicted_per_second": (
                stats.completion_tokens * 1000.0 / predicted_ms if predicted_ms > 0 else 0.0
            ),
            "cache_n": stats.cached_tokens,
        }

    def final(self, finish: FinishReason, stats: Stats) -> bytes:
        choice: JSON = {"finish_reason": finish, "index": 0, "delta": {}}
        return self._chunk([choice], timings=self.timings(stats))

    def usage(self, stats: Stats) -> bytes:
        return self._chunk([], usage=stats.usage())

    def completion(self, pieces: list[Piece], finish: FinishReason, stats: Stats) -> JSON:
        choice = self._completion_choice(pieces, finish)
        return {
            "choices": [choice],
            **self._tail,
            "object": "chat.completion",
            "usage": stats.usage(),
            "id": self.id,
            "timings": self.timings(stats),
        }

    @classmethod
    def error(
        cls, status: int, message: str, type_: str, code: str | None = None, **extra: Any
    ) -> ErrorReply:
        extra.pop("param", None)
        return ErrorReply(
            status, {"error": {"code": status, "message": message, "type": type_, **extra}}
        )

    @classmethod
    def unauthorized(cls) -> ErrorReply:
        return cls.error(401, "Invalid API Key", "authentication_error")

    @classmethod
    def rate_limited(cls, code: str) -> ErrorReply:
        return cls.error(429, "Too many requests", "unavailable_error")

    @classmethod
    def context_overflow(cls, prompt_tokens: int, n_ctx: int) -> ErrorReply:
        return cls.error(
            400,
            "the request exceeds the available context size, try increasing it",
            "exceed_context_size_error",
            n_prompt_tokens=prompt_tokens,
            n_ctx=n_ctx,
        )

    @classmethod
    def models(cls, model: str, n_ctx: int) -> JSON:
        return {
            "object": "list",
            "data": [
                {
                    "id": model,
                    "object": "model",
                    "created": int(time.time()),
                    "owned_by": "llamacpp",
                    "meta": {"n_ctx_train": n_ctx},
                }
            ],
        }


_RATE_LIMIT_MESSAGES = {
    "request_quota_exceeded": "Requests per minute limit exceeded - too many requests sent.",
    "token_quota_exceeded": "Tokens per minute limit exceeded - too many tokens processed.",
}


class Cerebras(Dialect):
    profile = "cerebras"
    reasoning_key = "reasoning"
    fingerprint = "fp_sim"

    def _choice(self, delta: JSON) -> JSON:
        return {"delta": delta, "index": 0}

    def _chunk(self, choices: list[JSON], **extra: Any) -> bytes:
        return _sse({"id": self.id, "choices": choices, **self._tail, **extra})

    def role(self) -> bytes:
        return self._chunk([self._choice({"role": "assistant"})])

    def time_info(self, stats: Stats) -> JSON:
        return {
            "queue_time": 0.0001,
            "prompt_time": stats.prompt_seconds,
            "completion_time": stats.completion_seconds,
            "total_time": stats.prompt_seconds + stats.completion_seconds,
            "created": time.time(),
        }

    def full_usage(self, stats: Stats) -> JSON:
        return {**stats.usage(), "prompt_tokens_details": {"cached_tokens": stats.cached_tokens}}

    def final(self, finish: FinishReason, stats: Stats) -> bytes:
        return self._chunk([{"delta": {}, "finish_reason": finish, "index": 0}])

    def usage(self, stats: Stats) -> bytes:
        return _sse(
            {
                "id": self.id,
                **self._tail,
                "usage": self.full_usage(stats),
                "time_info": self.time_info(stats),
            }
        )

    def completion(self, pieces: list[Piece], finish: FinishReason, stats: Stats) -> JSON:
        choice = self._completion_choice(pieces, finish)
        return {
            "id": self.id,
            "choices": [choice],
            **self._tail,
            "object": "chat.completion",
            "usage": self.full_usage(stats),
            "time_info": self.time_info(stats),
        }

    @classmethod
    def error(
        cls, status: int, message: str, type_: str, code: str | None = None, **extra: Any
    ) -> ErrorReply:
        body = {"message": message, "type": type_, "param": extra.get("param"), "code": code}
        return ErrorReply(status, body)

    @classmethod
    def unauthorized(cls) -> ErrorReply:
        return cls.error(
            401, "Wrong API Key", "invalid_request_error", "wrong_api_key", param="api_key"
        )

    @classmethod
    def rate_limited(cls, code: str) -> ErrorReply:
        message = _RATE_LIMIT_MESSAGES.get(code, "Too many requests.")
        return cls.error(429, message, "too_many_requests_error", code, param="quota")

    @classmethod
    def context_overflow(cls, prompt_tokens: int, n_ctx: int) -> ErrorReply:
        return cls.error(
            400,
            "Please reduce the length of the messages or completion.",
            "invalid_request_error",
            "context_length_exceeded",
            param="messages",
        )

    @classmethod
    def models(cls, model: str, n_ctx: int) -> JSON:
        return {
            "object": "list",
            "data": [{"id": model, "object": "model", "created": 0, "owned_by": "Cerebras"}],
        }


DIALECTS: dict[Profile, type[Dialect]] = {"llamacpp": LlamaCpp, "cerebras": Cerebras}
