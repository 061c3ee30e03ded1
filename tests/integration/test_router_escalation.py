"""Conversation fingerprints, agent-loop signals (on the recorded Cline CLI 3.0.65 fixture and on
OpenAI-style tool messages), escalation through the gateway, and its persistence across a
restart. The Cline loop without node: the recorded turns replayed through the gateway."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from paths import FIXTURES
from support import CEREBRAS_KEY, gateway_config, post_stream

from gateway.config import EscalationConfig, LearnConfig
from gateway.dev.sim import ScriptedAnswer, SimServer, ToolCallSpec
from gateway.router.conversation import HEADER, conversation_key, fingerprint, view
from gateway.router.escalation import ConversationTracker
from gateway.router.labels import LabelBook, LearningStore
from gateway.router.signals import detect

FIXTURE = FIXTURES / "cline_3.0.65.json"


SCENARIOS: dict[str, Any] = json.loads(FIXTURE.read_text())["scenarios"]


def cline_body(request: dict[str, Any]) -> dict[str, Any]:
    """A recorded request as Cline sent it (tools were stored by name only)."""
    body = copy.deepcopy(request)
    body["tools"] = [
        {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
        for n in body["tools"]
    ]
    body["model"] = "glm-token-saver"
    return body


def test_fingerprint_is_stable_over_a_clines_turns() -> None:
    requests = SCENARIOS["unknown_tool"]["requests"]
    keys = {conversation_key(r) for r in requests}
    assert len(keys) == 1, "every turn of one task has the same key"
    assert keys.pop().startswith("fp:")


def test_fingerprint_differs_by_first_message_and_system_prompt() -> None:
    base = [{"role": "system", "content": "S"}, {"role": "user", "content": "say hello"}]
    other_ask = [base[0], {"role": "user", "content": "say goodbye"}]
    other_system = [{"role": "system", "content": "T"}, base[1]]
    later = [*base, {"role": "assistant", "content": "hi"}, {"role": "user", "content": "more"}]
    assert fingerprint(base) == fingerprint(later)
    assert len({fingerprint(base), fingerprint(other_ask), fingerprint(other_system)}) == 3


def test_fingerprint_keeps_the_keys_learning_db_already_holds() -> None:
    """The system prompt's hash is cached across requests; keys must stay what they were."""
    messages = [{"role": "system", "content": "S é"}, {"role": "user", "content": "say hello"}]
    expected = hashlib.sha256("S é\x00say hello\x00".encode()).hexdigest()[:32]
    assert fingerprint(messages) == "fp:" + expected
    again = [{"role": "system", "content": "".join(["S", " é"])}, messages[1]]  # a new str
    assert fingerprint(again) == "fp:" + expected
    other = [messages[0], {"role": "user", "content": "say goodbye"}]
    assert fingerprint(other) != fingerprint(messages)


def test_fingerprint_reads_text_parts() -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "say hello"}]}]
    assert fingerprint(parts) == fingerprint([{"role": "user", "content": "say hello"}])


def test_conversation_id_header_wins() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    a = conversation_key(body, {HEADER: "task-1"})
    assert a.startswith("id:") and a != conversation_key(body, {HEADER: "task-2"})
    assert conversation_key(body, {HEADER: "bad value with spaces"}).startswith("fp:")


def test_turn_view_counts_answers() -> None:
    first = SCENARIOS["unknown_tool"]["requests"][0]
    third = SCENARIOS["unknown_tool"]["requests"][2]
    assert view(first).starts_task and view(first).turn == 1
    assert view(third).answers_before == 2 and view(third).turn == 3


@pytest.mark.parametrize(
    ("scenario", "kind"),
    [
        ("unknown_tool", "unknown_tool"),
        ("invalid_arguments", "invalid_arguments"),
        ("unparsable_arguments", "unparsable_arguments"),
        ("good_tool_call", None),
        ("failed_command", None),
    ],
)
def test_signal_on_recorded_cline_turns(scenario: str, kind: str | None) -> None:
    recorded = SCENARIOS[scenario]
    assert recorded["cline_returncode"] == 0
    first, *later = recorded["requests"]
    assert detect(first["messages"]) is None, "the first request answers nothing"
    signal = detect(later[0]["messages"])
    assert (signal.kind if signal else None) == kind


def test_fixture_is_what_cline_really_sent() -> None:
    unknown = SCENARIOS["unknown_tool"]["requests"]
    assert len(unknown) == 3, "Cline 3.0.65 gives up after three failed turns"
    tool = unknown[1]["messages"][-1]
    assert tool["role"] == "tool" and "AI_NoSuchToolError" in tool["content"]
    assert "say_hello" in tool["content"]


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        ("Error: unknown tool 'frobnicate'", "unknown_tool"),
        ('{"error": "Tool frobnicate does not exist"}', "unknown_tool"),
        ("Error: invalid arguments: missing required parameter 'path'", "invalid_arguments"),
        (
            "Error parsing tool call arguments: Expecting value: line 1 column 1",
            "unparsable_arguments",
        ),
        ('{"error": {"message": "Invalid JSON in arguments"}}', "unparsable_arguments"),
        ("def check():\n    raise ValueError('invalid input')", None),
        ("total 0\n-rw-r--r-- 1 u u 0 notes.txt", None),
        ('{"result": "ok"}', None),
    ],
)
def test_signal_on_openai_style_tool_messages(content: str, kind: str | None) -> None:
    messages = [
        {"role": "user", "content": "do it"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "x", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": content},
    ]
    signal = detect(messages)
    assert (signal.kind if signal else None) == kind


def test_tool_message_of_another_call_is_ignored() -> None:
    messages = [
        {"role": "user", "content": "do it"},
        {"role": "assistant", "tool_calls": [{"id": "c2", "function": {"name": "x"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Error: unknown tool 'x'"},
    ]
    assert detect(messages) is None


def _call(name: str, args: str, call_id: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def test_repeated_call_with_same_arguments() -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "read it"}]
    for n, args in enumerate(['{"path": "a", "n": 1}', '{"n": 1, "path": "a"}']):
        messages.append({"role": "assistant", "tool_calls": [_call("read", args, f"c{n}")]})
        messages.append({"role": "tool", "tool_call_id": f"c{n}", "content": "contents"})
    signal = detect(messages)
    assert signal is not None and signal.kind == "repeated_call"
    messages[-2]["tool_calls"][0]["function"]["arguments"] = '{"path": "b"}'
    assert detect(messages) is None


def test_old_cline_text_protocol() -> None:
    messages = [
        {"role": "user", "content": "<task>say hello</task>"},
        {"role": "assistant", "content": "Hello!"},
        {
            "role": "user",
            "content": "[ERROR] You did not use a tool in your previous response! "
            "Please retry with a tool use.",
        },
    ]
    signal = detect(messages)
    assert signal is not None and signal.kind == "client_retry"
    messages[-1]["content"] = (
        "[read_file for 'a.py'] Result:\nMissing value for required parameter 'path'. "
        "Please retry with complete response."
    )
    signal = detect(messages)
    assert signal is not None and signal.kind == "invalid_arguments"


def tracker(
    tmp_path: Path, turns: int | None = None, **kw: Any
) -> tuple[ConversationTracker, list]:
    learned: list[tuple[str, bool, str, float]] = []

    def learner(request_id: str, bad: bool, source: str, weight: float) -> bool:
        learned.append((request_id, bad, source, weight))
        return True

    store = LearningStore(str(tmp_path / "learning.db"))
    cfg = EscalationConfig(turns=turns, **kw)
    loaded = store.load(ttl_seconds=cfg.ttl_seconds, max_rows=1000)
    labels = LabelBook(store, learner, dict(loaded.label_counts))
    return ConversationTracker(cfg, LearnConfig(), store, labels, loaded), learned


def test_tracker_escalates_labels_and_counts_turns(tmp_path: Path) -> None:
    t, learned = tracker(tmp_path, turns=1)
    reqs = SCENARIOS["unknown_tool"]["requests"]
    assert t.begin("r0", reqs[0]) is None
    t.finish("r0", "local")
    reason = t.begin("r1", reqs[1])
    assert reason == "escalated: the local answer at turn 1 called an unknown tool"
    assert learned == [("r0", True, "agent_loop", 1.0)]
    assert t.escalation("r1") == reason
    t.finish("r1", "cerebras")
    assert t.begin("r2", reqs[2]) is None, "turns: 1 -> only one escalated request"
    t.store.close()


def test_tracker_ok_turn_gets_a_light_good_label(tmp_path: Path) -> None:
    t, learned = tracker(tmp_path)
    reqs = SCENARIOS["good_tool_call"]["requests"]
    t.begin("g0", reqs[0])
    t.finish("g0", "local")
    assert t.begin("g1", reqs[1]) is None
    assert learned == [("g0", False, "agent_loop", 0.2)]
    t.store.close()


def test_tracker_forgets_a_failure_of_cerebras_and_a_new_task(tmp_path: Path) -> None:
    t, learned = tracker(tmp_path)
    reqs = SCENARIOS["unknown_tool"]["requests"]
    t.begin("c0", reqs[0])
    t.finish("c0", "cerebras")
    assert t.begin("c1", reqs[1]) is None, "only a failed local answer escalates"
    assert learned == []
    t.finish("c1", "local")
    assert t.begin("c2", reqs[2]) is not None
    assert t.begin("c3", reqs[0]) is None, "the same first request again: a new task"
    t.store.close()


def test_tracker_state_is_bounded(tmp_path: Path) -> None:
    t, _ = tracker(tmp_path, max_conversations=3)
    for n in range(10):
        body = {"messages": [{"role": "user", "content": f"task {n}"}]}
        t.begin(f"b{n}", body)
        t.finish(f"b{n}", "local")
    assert len(t.conversations) == 3
    assert len(t.turns) <= 30
    t.store.close()


def script_the_loop(local: SimServer, cerebras: SimServer) -> None:
    """Local calls a tool that does not exist; Cerebras answers as Cline 3.0.65 finishes a task
    (plain text; this Cline has no attempt_completion tool: a turn without a tool call ends it)."""
    local.options.script = {
        "*": ScriptedAnswer(tool_calls=[ToolCallSpec("say_hello", '{"text":"hello"}')])
    }
    cerebras.options.script = {"*": ScriptedAnswer(content="Hello!")}


async def test_cline_loop_replayed_through_the_gateway(
    make_gateway, client, local_sim, cerebras_sim, caplog
) -> None:
    """The recorded Cline turns: the first answer is local's broken call, the next turn goes to
    Cerebras with the reason, and the task ends there (one failed local turn at most)."""
    gw = await make_gateway("smart_routing")
    script_the_loop(local_sim, cerebras_sim)
    requests = SCENARIOS["unknown_tool"]["requests"]
    first = await post_stream(client, gw.url, cline_body(requests[0]))
    assert first.chunks[-1]["model_used"] == "local"
    reasons = [c["choices"][0].get("finish_reason") for c in first.chunks if c["choices"]]
    assert "tool_calls" in reasons
    with caplog.at_level(logging.INFO, logger="gateway"):
        second = await post_stream(client, gw.url, cline_body(requests[1]))
    final = second.chunks[-1]
    assert final["model_used"] == "cerebras"
    reason = "escalated: the local answer at turn 1 called an unknown tool"
    assert final["routing_reason"] == f"smart_routing: {reason} -> cerebras"
    assert second.text == "Hello!"
    assert any(reason in r.getMessage() for r in caplog.records), "the log says why"
    assert len(local_sim.requests) == 1 and len(cerebras_sim.requests) == 1
    gw.services.learning.flush()
    stats = await (await client.get(gw.root + "/stats")).json()
    assert stats["learning"]["escalated_turns"] == 1
    assert stats["router"]["escalations"] == 1


async def test_escalation_survives_a_restart(
    make_gateway, client, local_sim, cerebras_sim, tmp_path
) -> None:
    script_the_loop(local_sim, cerebras_sim)
    requests = SCENARIOS["unknown_tool"]["requests"]
    cfg = gateway_config(tmp_path, local_sim.url, cerebras_sim.url, strategy="smart_routing")
    gw = await make_gateway(config=cfg)
    await post_stream(client, gw.url, cline_body(requests[0]))
    second = await post_stream(client, gw.url, cline_body(requests[1]))
    assert second.chunks[-1]["model_used"] == "cerebras"
    await gw.server.close()  # runs the app's cleanup: the learning store commits and closes

    again = await make_gateway(config=cfg)
    third = cline_body(requests[2])  # a later turn of the same conversation
    reply = await post_stream(client, again.url, third)
    assert reply.chunks[-1]["model_used"] == "cerebras"
    assert "escalated: the local answer at turn 1" in reply.chunks[-1]["routing_reason"]
    assert len(local_sim.requests) == 1


async def test_escalation_respects_the_gate(make_gateway, client, local_sim, cerebras_sim) -> None:
    """An escalated turn still asks the gate: with Cerebras cooling down, local serves it."""
    gw = await make_gateway("smart_routing")
    script_the_loop(local_sim, cerebras_sim)
    requests = SCENARIOS["unknown_tool"]["requests"]
    await post_stream(client, gw.url, cline_body(requests[0]))
    cerebras_sim.inject("http_429", reset_seconds=600)
    second = await post_stream(client, gw.url, cline_body(requests[1]))
    assert second.status == 200 and second.data[-1] == "[DONE]"
    assert second.chunks[-1]["model_used"] == "local"
    assert "escalated" in second.chunks[-1]["routing_reason"]
    assert "fallback to local" in second.chunks[-1]["routing_reason"]


async def test_smart_speculative_escalates_too(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    gw = await make_gateway("smart_speculative")
    script_the_loop(local_sim, cerebras_sim)
    requests = SCENARIOS["unknown_tool"]["requests"]
    await post_stream(client, gw.url, cline_body(requests[0]))
    second = await post_stream(client, gw.url, cline_body(requests[1]))
    assert second.chunks[-1]["model_used"] == "cerebras"
    assert second.chunks[-1]["routing_reason"].startswith("smart_speculative: escalated:")


async def test_conversation_id_header_tracks_the_conversation(
    make_gateway, client, local_sim, cerebras_sim
) -> None:
    gw = await make_gateway("smart_routing")
    script_the_loop(local_sim, cerebras_sim)
    requests = SCENARIOS["unknown_tool"]["requests"]
    first = cline_body(requests[0])
    second = cline_body(requests[1])
    second["messages"][0]["content"] = "a system prompt that changed between turns"
    headers = {HEADER: "cline-task-42"}
    await post_stream(client, gw.url, first, headers=headers)
    reply = await post_stream(client, gw.url, second, headers=headers)
    assert reply.chunks[-1]["model_used"] == "cerebras"
    assert CEREBRAS_KEY not in str(cerebras_sim.requests[-1].headers.get(HEADER))
    assert HEADER not in {k.lower() for k in cerebras_sim.requests[-1].headers}


def test_config_keys() -> None:
    from gateway.config import ConfigError, parse_config

    cfg = parse_config({"routing": {"escalation": {"turns": 2}, "learn": {"agent_loop": False}}})
    assert cfg.routing.escalation.turns == 2 and cfg.routing.escalation.enabled
    assert cfg.routing.learn.agent_loop is False
    assert parse_config(None).routing.escalation.turns is None, "default: the rest of the task"
    with pytest.raises(ConfigError, match="routing.escalation.turns"):
        parse_config({"routing": {"escalation": {"turns": 0}}})
    with pytest.raises(ConfigError, match="routing.learn.verify_sample"):
        parse_config({"routing": {"learn": {"verify_sample": 1.5}}})


def test_tracker_reads_a_follow_up_whose_tool_result_id_is_not_a_string(tmp_path: Path) -> None:
    """The follow-up turn of a conversation is judged (`begin`, before the request runs, with
    nothing around it to catch an error): a tool result whose `tool_call_id` is a list, which
    request validation lets through, must not raise (it raised TypeError: unhashable type)."""
    t, _ = tracker(tmp_path)
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    first = {"messages": [{"role": "user", "content": "go"}]}
    t.begin("x0", first)
    t.finish("x0", "local")
    follow_up = {
        "messages": [
            *first["messages"],
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": ["c1"], "content": "Error: unknown tool 'f'"},
        ]
    }
    t.begin("x1", follow_up)
    t.store.close()
