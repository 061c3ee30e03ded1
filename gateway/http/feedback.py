"""`POST /v1/feedback {"request_id": str, "score": number}`: a user's verdict on one answer.

The request id is the `x-request-id` the answer's response carried. `score` is a number from -1
(bad) to 1 (good): below 0 labels the answer bad, above 0 good, with weight |score|; 0 is stored
and changes nothing. Thumbs down / up are -1 / 1. The endpoint is authenticated like every other
(gateway.http.guard: client keys when configured). Answers, in the OpenAI error shape on failure:
200 `{"status": "recorded", ...}` once the writer thread has committed the label and what it
changed (weights, escalation) to `learning.db` and `router.db` (a write SQLite refuses is logged and
skipped, as a ledger row's would be), 400 for a malformed body, 404 for an id this gateway
did not answer (or has forgotten: ids are kept `routing.escalation.ttl_seconds`), 503 while
starting.
"""

from __future__ import annotations

import logging
import math

import orjson
from aiohttp import web

from gateway.errors import BadRequest, GatewayError
from gateway.responses import error_response, json_response
from gateway.router.learning import SCORE_MAX, SCORE_MIN, Learning

log = logging.getLogger("gateway.http.feedback")

LEARNING_KEY = web.AppKey("learning", Learning)
MAX_BODY = 64 * 1024


class UnknownRequest(GatewayError):
    status = 404
    error_type = "not_found_error"


def parse_feedback(raw: bytes) -> tuple[str, float]:
    """(request_id, score) from a feedback body; BadRequest naming the field otherwise."""
    if len(raw) > MAX_BODY:
        raise BadRequest("feedback body is too large", code="invalid_body")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the body must be JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_body")
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not request_id.strip() or len(request_id) > 128:
        raise BadRequest(
            "request_id must be the non-empty x-request-id of an answer",
            code="invalid_request_id",
            param="request_id",
        )
    score = body.get("score")
    if (
        isinstance(score, bool)
        or not isinstance(score, int | float)
        or not math.isfinite(score)
        or not SCORE_MIN <= score <= SCORE_MAX
    ):
        raise BadRequest(
            f"score must be a number from {SCORE_MIN:g} (bad) to {SCORE_MAX:g} (good)",
            code="invalid_score",
            param="score",
        )
    return request_id.strip(), float(score)


async def post_feedback(request: web.Request) -> web.Response:
    learning = request.app.get(LEARNING_KEY)
    try:
        if learning is None:
            raise GatewayError(
                "the gateway is starting; retry shortly",
                status=503,
                error_type="service_unavailable",
                code="starting",
            )
        request_id, score = parse_feedback(await request.read())
        result = learning.feedback(request_id, score)
    except GatewayError as exc:
        return error_response(exc)
    if not result.known:
        return error_response(
            UnknownRequest(
                f"no answer with request id {request_id!r} is known to this gateway",
                code="unknown_request_id",
                param="request_id",
            )
        )
    # Learned state is group-committed across requests (gateway.storage.writer); "recorded"
    # promises this one is on disk.
    await learning.committed()
    log.info(
        "feedback req=%s score=%g model_used=%s applied=%s escalated=%s",
        request_id, score, result.model_used, result.applied, result.escalated,
    )  # fmt: skip
    return json_response(
        {
            "status": "recorded",
            "request_id": request_id,
            "score": score,
            "label": None if result.bad is None else ("bad" if result.bad else "good"),
            "model_used": result.model_used,
            "learned": result.applied,
            "escalated": result.escalated,
        }
    )


def setup_feedback(app: web.Application) -> None:
    app.router.add_post("/v1/feedback", post_feedback)
    app.router.add_post("/feedback", post_feedback)
