"""`routing.target_cloud_share` under every router kind: the heuristic's continuous score and the
share the router keeps (unit tests: the Router is called directly, no sockets)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gateway.config import ROUTER_KINDS, GatewayConfig, parse_config
from gateway.router import Router
from gateway.router.classifier import TaskClassifier
from gateway.router.heuristic import COMPLEX, HeuristicScore

WORDS = "apple river seven blue table quiet north paper stone light green market".split()


def config(kind: str, **routing: object) -> GatewayConfig:
    return parse_config({"routing": {"router": kind, **routing}}, env={})


def body(text: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}]}


def plain_asks(n: int, seed: int = 0) -> list[str]:
    """Short asks with no complexity signal: the classifier calls every one simple."""
    rng = random.Random(seed)
    return [
        f"ask {i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 120)))
        for i in range(n)
    ]


def share(router: Router, asks: list[str]) -> float:
    """The share of the second half of `asks` sent to Cerebras (the first half fills the
    window)."""
    cloud = [router.route(f"r{i}", body(a)).cloud for i, a in enumerate(asks)]
    late = cloud[len(cloud) // 2 :]
    return sum(late) / len(late)


CASES = [
    "",
    "hi",
    "what is the capital of France",
    "please debug this",
    "solve for x",
    "```\nprint(1)\n```",
    "Traceback (most recent call last):\n  File x",
    "a? b? c?",
    "- one\n- two\n- three",
    "x " * 399,
    "word " * 500,
]


@pytest.mark.parametrize("threshold", [0, 1, 10, 100, 1000])
def test_score_at_half_is_exactly_the_classifiers_complex(threshold: int) -> None:
    classifier = TaskClassifier(["debug"], threshold)
    scorer = HeuristicScore(classifier)
    edges = [4 * threshold + d for d in (-1, 0, 1, 2) if 4 * threshold + d > 0]
    lengths = [*range(1, 4 * threshold + 12, max(1, threshold // 7)), *edges]
    asks = CASES + ["a" * n for n in lengths]
    for ask in asks:
        score = scorer.score(ask)
        assert 0.0 <= score < 1.0
        assert (score >= COMPLEX) == classifier.classify_ask(ask).complex, (threshold, ask[:30])


def test_score_ranks_keywords_then_signals_then_length() -> None:
    scorer = HeuristicScore(TaskClassifier(["debug"], 1000))
    short, long_ = "name a colour", "name a colour " + "and another " * 60
    assert scorer.score(long_) > scorer.score(short) > scorer.score("") == 0.0
    signal = scorer.score("explain why the sky is blue")
    assert signal > scorer.score(long_)
    assert scorer.score("debug it") > signal


@pytest.mark.parametrize("kind", ROUTER_KINDS)
@pytest.mark.parametrize("target", [0.2, 0.5, 0.8])
def test_every_router_kind_keeps_the_target_share(kind: str, target: float) -> None:
    """The asks are all simple for the classifier: a heuristic that ignored the target would
    send none of them to Cerebras."""
    router = Router(config(kind, target_cloud_share=target), store_path=None)
    assert abs(share(router, plain_asks(600)) - target) <= 0.05
    router.close()


def test_without_a_target_the_heuristic_is_the_classifier() -> None:
    router = Router(config("heuristic"), store_path=None)
    assert share(router, plain_asks(100)) == 0.0
    decision = router.route("x", body("what is the capital of France"))
    assert decision.reason.startswith("simple: ")
    assert router.snapshot()["threshold"] is None
    router.close()


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_keyword_asks_count_inside_the_share(kind: str) -> None:
    """Keywords force Cerebras, and the window counts them as its top scores: one ask in ten
    names one, and the share stays at the target rather than target + 0.1."""
    asks = plain_asks(800, seed=1)
    asks = [f"debug {a}" if i % 10 == 0 else a for i, a in enumerate(asks)]
    router = Router(config(kind, target_cloud_share=0.3), store_path=None)
    cloud = [router.route(f"r{i}", body(a)) for i, a in enumerate(asks)]
    assert all(d.cloud for i, d in enumerate(cloud) if i % 10 == 0)
    late = [d.cloud for d in cloud[400:]]
    assert abs(sum(late) / len(late) - 0.3) <= 0.05
    router.close()


def test_heuristic_under_a_target_says_why_and_shows_its_threshold() -> None:
    router = Router(config("heuristic", target_cloud_share=0.5), store_path=None)
    for i, ask in enumerate(plain_asks(40)):
        router.route(f"r{i}", body(ask))
    decision = router.route("x", body("name a colour"))
    assert decision.score is not None
    assert decision.reason.startswith("heuristic: score ")
    assert "(target share 0.5; simple: " in decision.reason
    threshold = router.snapshot()["threshold"]
    assert isinstance(threshold, float) and 0.0 < threshold < COMPLEX
    router.close()


def test_heuristic_window_survives_a_restart(tmp_path: Path) -> None:
    cfg = config("heuristic", target_cloud_share=0.4)
    first = Router(cfg, store_path=tmp_path / "router.db")
    for i, ask in enumerate(plain_asks(60)):
        first.route(f"r{i}", body(ask))
    threshold = first.snapshot()["threshold"]
    first.close()
    second = Router(cfg, store_path=tmp_path / "router.db")
    assert second.snapshot()["threshold"] == threshold
    assert second.route("x", body("name a colour")).reason.startswith("heuristic: score ")
    second.close()


def test_share_holds_while_the_learned_model_learns() -> None:
    """Labels move every score (here: all "good", at the agent loop's weight, so scores fall);
    the window is re-scored with the new weights, so the threshold follows the model and the
    share stays on target."""
    router = Router(config("learned", target_cloud_share=0.5), store_path=None)
    asks = plain_asks(600, seed=2)
    cloud = []
    for i, ask in enumerate(asks):
        cloud.append(router.route(f"r{i}", body(ask)).cloud)
        if i % 3 == 0:
            assert router.learn(f"r{i}", False, "test", weight=0.2)
    late = cloud[300:]
    assert abs(sum(late) / len(late) - 0.5) <= 0.05
    router.close()


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_a_short_stream_keeps_the_target_from_its_start(kind: str) -> None:
    """The scorer's own rule decides only the first few asks: over 100 asks the share is on
    target (the heuristic's own rule would send every one of these asks local)."""
    router = Router(config(kind, target_cloud_share=0.8), store_path=None)
    cloud = [router.route(f"r{i}", body(a)).cloud for i, a in enumerate(plain_asks(100, 3))]
    assert abs(sum(cloud) / len(cloud) - 0.8) <= 0.05
    router.close()
