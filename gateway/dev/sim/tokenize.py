"""llama-server's `/apply-template` and `/tokenize`, simulated so that counting a chat body's
prompt (template, then tokenizer) gives the prompt_tokens the simulator bills for that body."""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.dev.sim.text import estimate_prompt_tokens, split_tokens

# The simulated template keeps the chat body it rendered, so its tokenizer counts what the
# chat endpoint would bill.
TEMPLATE_MARK = "<|sim-template|>"


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


async def handle_apply_template(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _json({"error": {"code": 400, "message": "invalid JSON"}}, 400)
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return _json({"error": {"code": 400, "message": "'messages' is required"}}, 400)
    kept = {"messages": body["messages"], "tools": body.get("tools")}
    return _json({"prompt": TEMPLATE_MARK + orjson.dumps(kept).decode()})


async def handle_tokenize(request: web.Request) -> web.Response:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return _json({"error": {"code": 400, "message": "invalid JSON"}}, 400)
    content = body.get("content") if isinstance(body, dict) else None
    if not isinstance(content, str):
        return _json({"error": {"code": 400, "message": "'content' must be a string"}}, 400)
    if content.startswith(TEMPLATE_MARK):
        count = estimate_prompt_tokens(orjson.loads(content[len(TEMPLATE_MARK) :]))
    else:
        count = len(split_tokens(content))
    return _json({"tokens": list(range(count))})
