"""Options, scripted answers and the per-request log of a simulated upstream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

Profile = Literal["llamacpp", "cerebras"]
PROFILES: tuple[Profile, ...] = ("llamacpp", "cerebras")
DEFAULT_MODELS: dict[Profile, str] = {"llamacpp": "sim-local", "cerebras": "zai-glm-4.7"}


@dataclass(slots=True)
class ToolCallSpec:
    """One tool call of a scripted answer; `arguments` is a JSON string, `id` generated if None."""

    name: str
    arguments: str = "{}"
    id: str | None = None


@dataclass(slots=True)
class ScriptedAnswer:
    """A fixed answer. `logprob` overrides SimOptions.logprob for its tokens."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    logprob: float | None = None


@dataclass(slots=True)
class AgentLoop:
    """What a coding agent's turns get (gateway.dev.sim.agents). `write_path`/`write_content`:
    Claude Code's Write call (an absolute path); `command`: the shell command Codex (and Cline)
    run; `final_text`: the answer once the tool result is back. An action left None is not
    scripted for that agent."""

    write_path: str | None = None
    write_content: str = "hello\n"
    command: str | None = None
    final_text: str = "Done."


@dataclass
class SimOptions:
    """How a simulated upstream behaves; mutable, read afresh by every request.

    `script` maps the text of the last user message (or "*") to an answer. `agent_loop`
    (gateway.dev.sim.agents) answers a recognised coding agent's turns with its own tool call
    and then text; it goes before `script`. `model=None` picks the profile's default. Quota
    limits of None are unlimited. `n_slots` is what /slots and /props report; it does not limit
    concurrency. `tool_calls_supported`: an unscripted request whose
    `tool_choice` is "required" (or names a function) gets a call to that tool, as llama-server
    with `--jinja` answers; False plays a server without tool support: `tools` are ignored and
    only text is answered (scripted tool calls are dropped).
    """

    profile: Profile
    model: str | None = None
    ttft: float = 0.0
    tps: float = 0.0
    answer_tokens: int = 40
    script: dict[str, ScriptedAnswer] | None = None
    agent_loop: AgentLoop | None = None
    api_key: str | None = None
    loading_seconds: float = 0.0
    n_ctx: int = 1_000_000
    quota_requests_per_minute: float | None = None
    quota_tokens_per_minute: float | None = None
    quota_requests_per_day: float | None = None
    default_max_completion_tokens: int = 40_000
    logprob: float = -0.05
    seed: int = 0
    n_slots: int = 1
    tool_calls_supported: bool = True
    # Thinking (gateway.dev.sim.thinking): unscripted answers start with this many reasoning tokens
    # unless the request switched thinking off; True answers 400 to the no-thinking parameter.
    reasoning_tokens: int = 0
    reject_thinking_param: bool = False
    # The share of each prompt the cerebras profile reports as served from its prompt cache
    # (usage.prompt_tokens_details.cached_tokens, rounded down).
    cached_prompt_share: float = 0.0

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, not {self.profile!r}")
        if self.model is None:
            self.model = DEFAULT_MODELS[self.profile]

    @property
    def model_name(self) -> str:
        return self.model or DEFAULT_MODELS[self.profile]


@dataclass
class SimRequestLog:
    """One chat request as the sim saw it. Times are time.monotonic() values."""

    body: dict[str, Any]
    headers: dict[str, str]
    path: str
    started_at: float
    first_byte_at: float | None = None
    ended_at: float | None = None
    disconnected_at: float | None = None
    status: int = 0
    fault: str | None = None
    prompt_tokens: int = 0
    completion_tokens_sent: int = 0
    reserved_tokens: int = 0
    stream: bool = False
    finished: bool = False
    # A trailing assistant message the request asked to continue, and the content the answer
    # planned to add (the llamacpp profile's echo of the prefill excluded).
    prefill: str | None = None
    planned_content: str = ""


def scripted_answer_from_json(value: Any) -> ScriptedAnswer:
    """Build a ScriptedAnswer from its JSON form; tool arguments may be a string or an object."""
    if isinstance(value, str):
        return ScriptedAnswer(content=value)
    if not isinstance(value, dict):
        raise ValueError(f"a scripted answer must be an object or a string, not {value!r}")
    calls = []
    for call in value.get("tool_calls") or []:
        args = call.get("arguments", "{}")
        if not isinstance(args, str):
            args = orjson.dumps(args).decode()
        calls.append(ToolCallSpec(name=str(call["name"]), arguments=args, id=call.get("id")))
    logprob = value.get("logprob")
    return ScriptedAnswer(
        content=str(value.get("content") or ""),
        reasoning=str(value.get("reasoning") or ""),
        tool_calls=calls,
        logprob=None if logprob is None else float(logprob),
    )


def script_from_json(value: Any) -> dict[str, ScriptedAnswer]:
    """Parse a {"prompt": answer} table (the --script file format)."""
    if not isinstance(value, dict):
        raise ValueError("a script must be a JSON object mapping prompts to answers")
    return {str(k): scripted_answer_from_json(v) for k, v in value.items()}
