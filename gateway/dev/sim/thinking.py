"""Thinking switches as each real server reads them, and the refusal of one (an option).

- llama-server: `chat_template_kwargs: {"enable_thinking": false}` reaches the chat template, and
  a template that reads it (GLM 4.7 Flash, Qwen3) emits no reasoning.
- Cerebras zai-glm-4.7: `reasoning_effort: "none"` (or the deprecated `disable_reasoning: true`)
  disables reasoning.

With `SimOptions.reject_thinking_param` the sim answers 400 naming the parameter instead, as a
server or API version that does not know it would; the gateway then retries once without it.
"""

from __future__ import annotations

from typing import Any

from gateway.dev.sim.options import SimOptions


def _template_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    kwargs = body.get("chat_template_kwargs")
    return kwargs if isinstance(kwargs, dict) else {}


def thinks(body: dict[str, Any], options: SimOptions) -> bool:
    """Whether this request's answer may carry reasoning on this profile."""
    if options.profile == "llamacpp":
        return _template_kwargs(body).get("enable_thinking") is not False
    return body.get("reasoning_effort") != "none" and body.get("disable_reasoning") is not True


def refused_thinking_param(body: dict[str, Any], options: SimOptions) -> str | None:
    """The no-thinking parameter to refuse with a 400, when the option is on and it was sent."""
    if not options.reject_thinking_param:
        return None
    if options.profile == "llamacpp":
        return "chat_template_kwargs" if "enable_thinking" in _template_kwargs(body) else None
    return "reasoning_effort" if "reasoning_effort" in body else None
