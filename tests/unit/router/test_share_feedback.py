"""The realised share's feedback in the calibration (gateway.router.calibration): when the mix of
asks shifts, the share sent to Cerebras comes back to the target within a few dozen asks, not
after the 1,000-score window has turned over. Fake streams, no sockets."""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path

import pytest

from gateway.config import ROUTER_KINDS
from gateway.router import Router
from gateway.router.calibration import HORIZON, ShareCalibrator
from unit.router.test_router_share import WORDS, body, config


def decide(calibrator: ShareCalibrator, scores: Iterable[float]) -> list[bool]:
    """Route each score as the Router does: threshold first, then the score and the decision
    join the calibrator."""
    cloud = []
    for score in scores:
        sent = score >= calibrator.threshold()
        calibrator.observe(score)
        calibrator.decided(sent)
        cloud.append(sent)
    return cloud


def share(cloud: list[bool]) -> float:
    return sum(cloud) / len(cloud)


def shifted_scores(shift_down: bool, seed: int = 0) -> list[float]:
    """300 scores spread over 0..1, then 300 from a narrow band at one end of that range."""
    rng = random.Random(seed)
    before = [rng.random() for _ in range(300)]
    band = (0.0, 0.4) if shift_down else (0.6, 1.0)
    return before + [rng.uniform(*band) for _ in range(300)]


@pytest.mark.parametrize("shift_down", [True, False])
@pytest.mark.parametrize("target", [0.2, 0.5, 0.8])
def test_a_shifted_mix_is_back_on_target_within_a_few_dozen_asks(
    target: float, shift_down: bool
) -> None:
    """The window still holds the 300 scores from before the shift, so its quantile alone
    would send far too few (scores shifted down) or too many (up) of the new asks."""
    calibrator = ShareCalibrator(target, default=0.5)
    cloud = decide(calibrator, shifted_scores(shift_down))
    assert abs(share(cloud[:300]) - target) <= 0.03
    assert abs(share(cloud[300 + 2 * HORIZON :]) - target) <= 0.05
    assert abs(share(cloud) - target) <= 0.02


def test_a_steady_mix_keeps_the_quantile() -> None:
    """Without a shift the debt stays small: the share asked of the window stays near the
    target, and the share sent is the target's."""
    rng = random.Random(3)
    calibrator = ShareCalibrator(0.3, default=0.5)
    asked = []
    cloud = []
    for _ in range(2000):
        cloud += decide(calibrator, [rng.random()])
        asked.append(calibrator.share())
    assert abs(share(cloud) - 0.3) <= 0.01
    assert all(a is not None and abs(a - 0.3) <= 0.3 for a in asked)
    mean = sum(a for a in asked if a is not None) / len(asked)
    assert abs(mean - 0.3) <= 0.02


def test_the_debt_is_bounded_and_paid_back_within_the_horizon() -> None:
    """A long run of forced decisions over the target (keywords alone, say) carries at most
    `horizon` asks of excess: once it ends, the share is back on target soon after."""
    rng = random.Random(4)
    calibrator = ShareCalibrator(0.5, default=0.5)
    for _ in range(500):
        calibrator.observe(1.0)  # a keyword-forced ask: top score, sent
        calibrator.decided(True)
    assert calibrator.debt == -HORIZON
    assert calibrator.share() == 0.0
    cloud = decide(calibrator, [rng.random() for _ in range(400)])
    recovered = HORIZON * 2  # the bounded excess is paid back at the target's rate
    assert share(cloud[:recovered]) < 0.5
    assert abs(share(cloud[recovered:]) - 0.5) <= 0.05


def test_without_a_target_decisions_change_nothing() -> None:
    calibrator = ShareCalibrator(None, default=0.42)
    decide(calibrator, [0.9] * 50)
    assert (calibrator.debt, calibrator.share(), calibrator.threshold()) == (0.0, None, 0.42)


def asks(n: int, words: tuple[int, int], seed: int) -> list[str]:
    """Plain asks (no complexity signal) of `words` words."""
    rng = random.Random(seed)
    return [
        f"ask {i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(*words)))
        for i in range(n)
    ]


@pytest.mark.parametrize("kind", ROUTER_KINDS)
@pytest.mark.parametrize("target", [0.2, 0.5, 0.8])
def test_every_router_kind_follows_a_shift_from_long_to_short_asks(
    kind: str, target: float
) -> None:
    """200 long asks, then 200 short ones: both scorers rank the short ones lower, and the
    window's quantile alone (the 200 long scores still in it) sent none of the short ones at
    0.2 and 0.5 under the heuristic, and 56 % of them at 0.8 under the learned model."""
    router = Router(config(kind, target_cloud_share=target), store_path=None)
    stream = asks(200, (60, 120), 1) + asks(200, (2, 30), 2)
    cloud = [router.route(f"r{i}", body(a)).cloud for i, a in enumerate(stream)]
    assert abs(share(cloud) - target) <= 0.03
    assert abs(share(cloud[200 + 2 * HORIZON :]) - target) <= 0.05
    snapshot = router.snapshot()
    assert snapshot["threshold_share"] is not None
    assert 0.0 <= snapshot["threshold_share"] <= 1.0
    router.close()


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_the_debt_survives_a_restart(kind: str, tmp_path: Path) -> None:
    """router.db keeps each decision beside its score: the debt is counted again from them, so
    the threshold and the share asked of the window are the same after a restart."""
    cfg = config(kind, target_cloud_share=0.5)
    first = Router(cfg, store_path=tmp_path / "router.db")
    for i, ask in enumerate(asks(60, (60, 120), 5) + asks(30, (2, 10), 6)):
        first.route(f"r{i}", body(ask))
    before = first.snapshot()
    first.close()
    second = Router(cfg, store_path=tmp_path / "router.db")
    after = second.snapshot()
    assert before["threshold_share"] != 0.5, "the shift left a debt to restore"
    assert (after["threshold"], after["threshold_share"]) == (
        before["threshold"],
        before["threshold_share"],
    )
    second.close()


def test_without_a_target_the_stats_show_no_share() -> None:
    router = Router(config("heuristic"), store_path=None)
    router.route("a", body("name a colour"))
    assert router.snapshot()["threshold_share"] is None
    router.close()
