"""The learned router's parts: features, model, calibration, online learning and persistence."""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import pytest

from gateway.config import ConfigError, GatewayConfig, parse_config
from gateway.router import Router
from gateway.router.calibration import ShareCalibrator
from gateway.router.features import (
    DENSE,
    HASH_SIZE,
    arithmetic_check,
    ask_features,
    draft_features,
    hedges,
)
from gateway.router.model import LinearModel, fit
from gateway.router.router import shipped_weights_path


def dense_index(name: str) -> int:
    """Where the dense feature `name` sits: after the hashed n-grams, in DENSE's order."""
    return HASH_SIZE + DENSE.index(name)


def config(**routing: object) -> GatewayConfig:
    return parse_config({"routing": {"router": "learned", **routing}}, env={})


def body(text: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}]}


def test_ask_features_see_length_numbers_code_questions_lists_and_keywords() -> None:
    plain = ask_features("hi there")
    rich = ask_features(
        "Why does 3 + 4 = 7?\nWhat about 5?\n- one\n- two\n- three\n```\ncode\n```", keyword_hits=2
    )
    for name in ("ask_numbers", "ask_math", "ask_code", "ask_questions", "ask_list_items"):
        assert rich.get(dense_index(name), 0) > plain.get(dense_index(name), 0), name
    assert rich[dense_index("ask_keywords")] > 0
    assert dense_index("ask_keywords") not in plain
    assert ask_features("x " * 400)[dense_index("ask_tokens_over_128")] == 1.0
    grams = [i for i in plain if i < HASH_SIZE]
    assert len(grams) == 3  # "hi", "there", "hi there"


def test_word_problem_features_of_the_ask() -> None:
    plain = ask_features("Write a short poem about the sea.")
    word = ask_features(
        "A shop sells 3 pens for $4.50. It is twice as busy on Mondays and sells 20% more. "
        "How many dollars does it take in 1/2 of a week?"
    )
    for name in ("ask_decimals", "ask_percent", "ask_fraction", "ask_ratio", "ask_how_many"):
        assert word.get(dense_index(name)) == pytest.approx(word.get(dense_index(name)) or 0)
        assert dense_index(name) in word and dense_index(name) not in plain, name
    assert word[dense_index("ask_units")] > 0
    assert word[dense_index("ask_number_count")] > 0
    assert word[dense_index("ask_sentences")] > plain[dense_index("ask_sentences")]
    assert plain[dense_index("ask_open_writing")] == 1.0
    assert ask_features("Explain how a compiler works step by step")[dense_index("ask_heuristic")]


def test_arithmetic_check_recomputes_every_equation() -> None:
    text = (
        "She has 16 - 3 = 13 eggs, sells 13 x $2 = $26 and <<26*2=52>>52.\n"
        "Then 1,200 + 300 = 1,500 and 40 + 20 = 61 and 50% * 8 = 4 and 80 / 120 = 2/3."
    )
    ok, wrong, results = arithmetic_check(text)
    assert (ok, wrong) == (6, 1)
    assert Fraction(61) in results and Fraction(2, 3) in results
    assert arithmetic_check("no sums here, just 3 apples = fruit") == (0, 0, [])


def test_draft_features_of_a_worked_answer() -> None:
    ask = "Tom has 5 apples and buys 7 more. How many apples does he have?"
    good = draft_features("5 + 7 = 12\n#### 12", 8, complete=True, ask=ask)
    slipped = draft_features("5 + 7 = 13\nSo he has 5", 8, complete=True, ask=ask)
    cut = draft_features("He has 5 + 7 = 12 apples, which is a total of 1", 12, complete=True)
    assert good[dense_index("draft_answer_line")] == 1.0
    assert good[dense_index("draft_final_in_steps")] == 1.0
    assert dense_index("draft_calc_wrong") not in good
    assert slipped[dense_index("draft_calc_wrong")] == 1.0
    assert slipped[dense_index("draft_final_in_ask")] == 1.0
    assert cut[dense_index("draft_cut_mid_number")] == 1.0
    assert dense_index("draft_cut_mid_number") not in good
    assert draft_features("It is 7/2", 3, complete=True)[dense_index("draft_final_fraction")]


@pytest.mark.parametrize(
    "text",
    [
        "I'm not sure.",
        "I don\u2019t know the answer to that.",
        "I can't help with that.",
        "I cannot answer this",
        "As an AI, I have no opinions.",
        "Sorry, I am unable to determine that.",
    ],
)
def test_hedges_and_refusals_are_detected(text: str) -> None:
    assert hedges(text)
    assert draft_features(text, 5, complete=True)[dense_index("draft_hedges")] == 1.0


@pytest.mark.parametrize("text", ["The answer is 42.", "Canada is north of the US.", "4"])
def test_plain_answers_do_not_hedge(text: str) -> None:
    assert not hedges(text)


def test_draft_logprob_features_only_when_present() -> None:
    none = draft_features("it is 4", 3, complete=True)
    some = draft_features("it is 4", 3, complete=True, logprobs=[-0.1, -0.2, -2.0])
    assert dense_index("draft_logprobs") not in none
    assert some[dense_index("draft_logprobs")] == 1.0
    assert 0 < some[dense_index("draft_prob_low")] < some[dense_index("draft_prob_mean")] < 1


def test_model_save_and_load_round_trip(tmp_path: Path) -> None:
    model = LinearModel({1: 0.5, HASH_SIZE: -0.25}, threshold=0.4)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(model.to_json()))
    loaded = LinearModel.from_json(json.loads(path.read_text()))
    assert loaded.weights == model.weights and loaded.threshold == 0.4
    x = {1: 1.0, HASH_SIZE: 2.0}
    assert loaded.score(x) == pytest.approx(0.5)  # 0.5 - 0.5 = 0 -> sigmoid 0.5
    with pytest.raises(ValueError, match="malformed"):
        LinearModel.from_json({"weights": [[10**9, 1.0]]})


def test_fit_is_deterministic_and_separates() -> None:
    xs = [{1: 1.0}, {2: 1.0}] * 10
    labels = [True, False] * 10
    a, b = fit(xs, labels, iterations=50), fit(xs, labels, iterations=50)
    assert a.weights == b.weights
    assert a.score({1: 1.0}) > 0.8 > 0.2 > a.score({2: 1.0})


def test_shipped_weights_are_small_and_load() -> None:
    path = shipped_weights_path()
    assert path.stat().st_size < 400_000
    router = Router(config(), store_path=None)
    assert set(router.models) == {"ask", "draft"}
    router.close()


def test_share_follows_the_target_on_a_shifted_mix() -> None:
    rng = random.Random(0)
    calibrator = ShareCalibrator(0.2, default=0.5, window=200)
    cloud = []
    for phase in range(2):  # easy asks first, then much harder ones: scores shift upwards
        for _ in range(1000):
            score = rng.betavariate(2, 5) if phase == 0 else rng.betavariate(5, 2)
            cloud.append(score >= calibrator.threshold())
            calibrator.observe(score)
    late_first, late_second = cloud[500:1000], cloud[1500:]
    assert abs(sum(late_first) / 500 - 0.2) < 0.06
    assert abs(sum(late_second) / 500 - 0.2) < 0.06
    assert ShareCalibrator(None, default=0.42).threshold() == 0.42


def test_calibration_window_survives_a_restart(tmp_path: Path) -> None:
    cfg = config(target_cloud_share=0.5)
    first = Router(cfg, store_path=tmp_path / "router.db")
    for i in range(40):
        first.route(f"r{i}", body(f"question number {i} " + "word " * i))
    threshold = first.threshold()
    first.close()
    second = Router(cfg, store_path=tmp_path / "router.db")
    assert len(second.calibrators["ask"]) == 40
    assert second.threshold() == threshold
    assert second.snapshot()["routed_in_window"] == 40
    second.close()


def test_learned_reason_is_readable_and_keywords_force_cerebras() -> None:
    router = Router(config(), store_path=None)
    decision = router.route("a", body("what is the capital of France"))
    assert decision.reason.startswith("learned: p(local fails)=")
    assert "threshold" in decision.reason
    forced = router.route("b", body("please debug this"))
    assert forced.cloud and forced.reason.startswith("learned: keyword 'debug' forces cerebras")
    router.close()


def test_heuristic_router_keeps_the_classifier_reasons() -> None:
    router = Router(config(router="heuristic"), store_path=None)
    assert router.route("a", body("please debug this")).reason == "complex: keyword 'debug'"
    router.close()


def test_learning_moves_the_score_and_survives_a_restart(tmp_path: Path) -> None:
    store = tmp_path / "router.db"
    router = Router(config(), store_path=store)
    router.route("req-1", body("name three colours of the rainbow"))
    before = router.score("req-1")
    assert before is not None
    assert router.learn("req-1", bad=True, source="feedback")
    after = router.score("req-1")
    assert after is not None and after > before
    assert not router.learn("unknown", bad=True, source="feedback")
    router.close()

    again = Router(config(), store_path=store)
    assert again.score("req-1") == pytest.approx(after)
    assert again.snapshot()["labels"] == {"feedback": 1}
    assert again.learn("req-1", bad=False, source="agent_loop", weight=2.0)
    lowered = again.score("req-1")
    assert lowered is not None and lowered < after
    again.close()
    import sqlite3

    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT request_id, source, label, weight FROM labels ORDER BY id")
        assert list(rows) == [("req-1", "feedback", 1, 1.0), ("req-1", "agent_loop", 0, 2.0)]


def test_counters_persist(tmp_path: Path) -> None:
    router = Router(config(), store_path=tmp_path / "router.db")
    router.count_escalation()
    router.count_no_think()
    router.count_no_think()
    router.close()
    again = Router(config(), store_path=tmp_path / "router.db")
    snap = again.snapshot()
    assert (snap["escalations"], snap["told_not_to_think"]) == (1, 2)
    again.close()


@pytest.mark.parametrize(
    ("routing", "message"),
    [
        ({"router": "neural"}, "routing.router: must be one of learned, heuristic"),
        ({"target_cloud_share": 1.5}, "routing.target_cloud_share: must be between"),
        ({"target_cloud_share": "half"}, "routing.target_cloud_share: expected float"),
    ],
)
def test_bad_router_settings_stop_start_naming_the_key(
    routing: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"routing": routing}, env={})


def test_router_settings_parse() -> None:
    cfg = parse_config(
        {
            "routing": {"router": "learned", "target_cloud_share": 0.25},
            "speculative_decoding": {"scorer": "learned"},
        },
        env={},
    )
    assert (cfg.routing.router, cfg.routing.target_cloud_share) == ("learned", 0.25)
    assert cfg.speculative_decoding.scorer == "learned"
    assert parse_config(None, env={}).routing.target_cloud_share is None
