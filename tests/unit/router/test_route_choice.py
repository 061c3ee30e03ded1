"""The one "classify, then route" decision (gateway.router.choice) on its own: no sockets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from paths import FIXTURES

from gateway.config import GatewayConfig, parse_config
from gateway.router import Router
from gateway.router.choice import choose_route
from gateway.router.learning import Learning

FIXTURE = FIXTURES / "cline_3.0.65.json"


def config(**routing: object) -> GatewayConfig:
    return parse_config({"routing": routing}, env={})


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.mark.parametrize(
    ("text", "cloud", "reason", "route", "thinking"),
    [
        (
            "please debug this",
            True,
            "complex: keyword 'debug'",
            ("cerebras", "local"),
            "default",
        ),
        (
            "hello",
            False,
            "simple: ~2-token ask, no complexity signal",
            ("local", "cerebras"),
            "off",
        ),
    ],
)
def test_heuristic_choice_routes_carries_the_thinking_mode_and_counts_once(
    text: str, cloud: bool, reason: str, route: tuple[str, str], thinking: str
) -> None:
    router = Router(config())
    choice = choose_route("r1", ask(text), router)
    assert (choice.cloud, choice.reason, choice.route, choice.escalated) == (
        cloud,
        reason,
        route,
        False,
    )
    assert choice.thinking == thinking
    snapshot = router.snapshot()
    assert (snapshot["routed_in_window"], snapshot["cloud_share"]) == (1, 1.0 if cloud else 0.0)


def test_pair_names_the_simple_and_the_complex_upstream() -> None:
    router = Router(config())
    simple = choose_route("a", ask("hello"), router, pair=("cerebras", "local"))
    hard = choose_route("b", ask("debug"), router, pair=("cerebras", "local"))
    assert (simple.route, hard.route) == (("cerebras", "local"), ("local", "cerebras"))


def test_learned_choice_carries_the_scorers_reason() -> None:
    cfg = config(router="learned", target_cloud_share=1.0)
    choice = choose_route("l1", ask("what is the capital of France"), Router(cfg))
    assert choice.cloud and choice.route == ("cerebras", "local")
    assert choice.reason.startswith("learned: p(local fails)=")
    assert choice.thinking == "default"


def test_the_modes_come_from_routing_thinking() -> None:
    router = Router(config(thinking={"simple": "default", "complex": "off"}))
    assert choose_route("s", ask("hello"), router).thinking == "default"
    assert choose_route("c", ask("please debug this"), router).thinking == "off"


def test_escalated_turn_goes_to_cerebras_unclassified(tmp_path: Path) -> None:
    cfg = config()
    router = Router(cfg)
    learning = Learning(cfg, learner=None, store_path=str(tmp_path / "learning.db"))
    try:
        requests = json.loads(FIXTURE.read_text())["scenarios"]["unknown_tool"]["requests"]
        learning.tracker.begin("t0", requests[0])
        learning.tracker.finish("t0", "local")
        learning.tracker.begin("t1", requests[1])
        choice = choose_route("t1", requests[1], router, learning, pair=("cerebras", "local"))
        assert choice.escalated and choice.cloud
        assert choice.reason == "escalated: the local answer at turn 1 called an unknown tool"
        assert choice.route == ("cerebras", "local"), "escalation always asks Cerebras first"
        assert choice.thinking == "default", "an escalated turn thinks as a complex ask"
        assert router.snapshot()["routed_in_window"] == 0, "an escalated turn is not classified"
        assert learning.tracker.escalated_turns == 1
    finally:
        learning.close()
