"""How well each verdict scorer predicts that the local answer is good, on replayed real answers.

Data: RouteLLM's GSM8K and MT-Bench answers of Mixtral-8x7B ("local") and GPT-4 ("cloud") with
correctness labels / judge scores (bench/data/routellm, see its README). The score of a pair
is the scorer's agreement between the two answers; AUROC 0.5 is chance. Measured here:

- GSM8K (label: local answer correct): levenshtein 0.71, token_set 0.76, final_answer 0.93;
  on the first ~100 tokens only (400 characters, a verdict window) levenshtein 0.69.
- MT-Bench (label: local judge score >= 8): levenshtein 0.51, token_set 0.37.

So the original project's whole-answer similarity (levenshtein) is weak on math and no signal on
open-ended prompts.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from paths import REPO_ROOT

from gateway.speculation.verdict import SCORERS, Answer, agreement

DATA = Path(os.environ.get("ROUTELLM_DATA", REPO_ROOT / "bench" / "data" / "routellm"))


LOCAL = "mistralai/Mixtral-8x7B-Instruct-v0.1"


CLOUD = "gpt-4-1106-preview"


WINDOW_CHARS = 400  # about max_draft_tokens = 100


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Probability that a positive outranks a negative (ties count half), by average ranks."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    positives = sum(labels)
    negatives = len(labels) - positives
    rank_sum = sum(r for r, label in zip(ranks, labels, strict=True) if label)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def test_auroc_helper() -> None:
    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert auroc([0.9, 0.1], [False, True]) == 0.0


def measure(pairs: list[tuple[str, str]], labels: list[bool], scorer: str, window: bool) -> float:
    chars = WINDOW_CHARS if window else None
    scores = [
        agreement(Answer(a[:chars]), Answer(b[:chars]), SCORERS[scorer]).value for a, b in pairs
    ]
    return auroc(scores, labels)


@pytest.fixture(scope="module")
def gsm8k() -> tuple[list[tuple[str, str]], list[bool]]:
    with (DATA / "gsm8k_responses.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    pairs = [(r[f"{LOCAL}_response"], r[f"{CLOUD}_response"]) for r in rows]
    return pairs, [r[LOCAL] == "True" for r in rows]


def test_gsm8k_final_answer_agreement_beats_text_similarity(gsm8k) -> None:
    pairs, labels = gsm8k
    assert len(pairs) == 1319
    levenshtein = measure(pairs, labels, "levenshtein", window=False)
    token_set = measure(pairs, labels, "token_set", window=False)
    final_answer = measure(pairs, labels, "final_answer", window=False)
    windowed = measure(pairs, labels, "levenshtein", window=True)
    assert levenshtein == pytest.approx(0.707, abs=0.01)
    assert token_set == pytest.approx(0.757, abs=0.01)
    assert final_answer == pytest.approx(0.934, abs=0.01)
    assert windowed == pytest.approx(0.685, abs=0.01)


def test_mt_bench_text_similarity_is_no_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    # The benchmark's own reading of the judged answers, so the figures here are its figures.
    monkeypatch.syspath_prepend(str(REPO_ROOT / "scripts"))
    from bench_replay import judged_answer

    answers: dict[tuple[int, int, str], tuple[str, float]] = {}
    with (DATA / "mt_bench_judgements.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            key = (row["question_id"], row["turn"], row["model"])
            answers[key] = (judged_answer(row), float(row["score"]))
    turns = sorted({(q, t) for q, t, _ in answers})
    pairs = [(answers[(q, t, LOCAL)][0], answers[(q, t, CLOUD)][0]) for q, t in turns]
    labels = [answers[(q, t, LOCAL)][1] >= 8 for q, t in turns]
    assert len(pairs) == 160
    assert measure(pairs, labels, "levenshtein", window=False) == pytest.approx(0.51, abs=0.02)
    assert measure(pairs, labels, "token_set", window=False) < 0.5
