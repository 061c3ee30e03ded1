#!/usr/bin/env python3
"""Train the learned router's weights (gateway/router/weights.json) on the replay data's tuning
split only: MT-Bench question ids 81-120 and GSM8K rows 0-659 (bench_replay's split constants).

Two logistic models: `ask` (features of the ask alone, for smart_routing) and `draft` (ask plus
the local draft's first 100 tokens, for the speculative after_draft path). Labels and features:
scripts/router_data.py. Each model's own threshold is chosen on the tuning split by one stated
rule (THRESHOLD_RULE) on out-of-fold scores. Deterministic: the same data gives byte-identical
weights.

Run: `.venv/bin/python scripts/train_router.py` (a few minutes on 2 cores);
`--check` retrains and fails if the shipped file differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from benchlib import ROOT
from router_data import MT_BENCH_GAP, Example, examples, load_all

from gateway.config import parse_config
from gateway.router import Router
from gateway.router.features import HASH_BITS, Features
from gateway.router.model import LinearModel, fit

WEIGHTS = ROOT / "gateway" / "router" / "weights.json"
ITERATIONS = 300
TARGET_QUALITY = 0.95
FOLDS = 5
# Chosen by cross-validation on the tuning split (docs/router.md, "Cross-validation"):
L2 = {"ask": 1e-2, "draft": 1e-3}
LABELS = {"ask": "outcome", "draft": "local_wrong"}
OUTCOME_FLOOR = 0.02  # weight of a GSM8K turn both models get equally right or wrong
THRESHOLD_RULE = (
    "the highest threshold at which the out-of-fold scores of a 5-fold cross-validation on the "
    "tuning split keep >= 95 % of always-Cerebras quality on each dataset"
)


def fold_of(example: Example) -> int:
    """GSM8K: row number mod 5. MT-Bench: one fold per category (ids 81-90, 91-100, ...), so a
    fold's MT-Bench questions are of a kind its model never saw, as held out they are."""
    number = int(example.turn.key.split("-")[1])
    if example.turn.dataset == "gsm8k":
        return number % FOLDS
    return (number - 81) // 10 % FOLDS


def quality_at(rows: Sequence[Example], scores: Sequence[float], threshold: float) -> float:
    """Mean received quality / always-Cerebras quality when p >= threshold goes to the cloud."""
    got = sum(
        (e.turn.cloud_quality if p >= threshold else e.turn.local_quality)
        for e, p in zip(rows, scores, strict=True)
    )
    cloud = sum(e.turn.cloud_quality for e in rows)
    return got / cloud


def choose_threshold(rows: Sequence[Example], scores: Sequence[float]) -> float:
    """The highest threshold (in steps of 0.01) keeping TARGET_QUALITY on each dataset."""
    datasets = sorted({e.turn.dataset for e in rows})
    best = 0.0
    for step in range(1, 100):
        t = step / 100
        ok = True
        for d in datasets:
            idx = [i for i, e in enumerate(rows) if e.turn.dataset == d]
            sub = [rows[i] for i in idx]
            if quality_at(sub, [scores[i] for i in idx], t) < TARGET_QUALITY:
                ok = False
        if ok:
            best = t
    return best


def targets(rows: Sequence[Example], which: str) -> tuple[list[bool], list[float]]:
    """Labels and sample weights. `local_wrong`: the label of scripts/router_data.py, weight 1.
    `outcome` (GSM8K only; MT-Bench keeps `local_wrong`): the label is "Cerebras answers better
    than local", weighted by how much quality routing changes: 1 when exactly one model is
    right, OUTCOME_FLOOR when both are right or both wrong (routing changes nothing there).
    Each dataset then weighs the same in the loss, whatever its number of rows."""
    labels, weights = [], []
    for e in rows:
        if LABELS[which] == "outcome" and e.turn.dataset == "gsm8k":
            gain = e.turn.cloud_quality - e.turn.local_quality
            labels.append(gain > 0)
            weights.append(abs(gain) + OUTCOME_FLOOR)
        else:
            labels.append(e.bad)
            weights.append(1.0)
    totals: dict[str, float] = {}
    for e, w in zip(rows, weights, strict=True):
        totals[e.turn.dataset] = totals.get(e.turn.dataset, 0.0) + w
    share = len(rows) / len(totals)
    return labels, [w * share / totals[e.turn.dataset] for e, w in zip(rows, weights, strict=True)]


def vectors(rows: Sequence[Example], which: str) -> list[Features]:
    return [e.ask if which == "ask" else e.draft for e in rows]


def fit_rows(rows: Sequence[Example], which: str, l2: float | None = None) -> LinearModel:
    labels, weights = targets(rows, which)
    return fit(
        vectors(rows, which),
        labels,
        l2=L2[which] if l2 is None else l2,
        iterations=ITERATIONS,
        sample_weights=weights,
    )


def out_of_fold(rows: Sequence[Example], which: str, l2: float | None = None) -> list[float]:
    """Each row's score from the model fitted on the other folds."""
    scores = [0.0] * len(rows)
    folds = [fold_of(e) for e in rows]
    xs = vectors(rows, which)
    for k in sorted(set(folds)):
        model = fit_rows([e for e, f in zip(rows, folds, strict=True) if f != k], which, l2)
        for i, f in enumerate(folds):
            if f == k:
                scores[i] = model.score(xs[i])
    return scores


def train(rows: Sequence[Example], which: str) -> LinearModel:
    """The model on all `rows`; its threshold from the out-of-fold scores (THRESHOLD_RULE)."""
    model = fit_rows(rows, which)
    model.threshold = choose_threshold(rows, out_of_fold(rows, which))
    return model


CV_COSTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def cv_objective(rows: Sequence[Example], scores: Sequence[float]) -> dict[str, float]:
    """Per dataset: mean over CV_COSTS of the best quality (fraction of always-Cerebras) at no
    more than that cost (fraction of always-Cerebras dollars), on out-of-fold scores."""
    out = {}
    for d in sorted({e.turn.dataset for e in rows}):
        pairs = sorted(
            ((p, e) for p, e in zip(scores, rows, strict=True) if e.turn.dataset == d),
            key=lambda pe: -pe[0],
        )
        total_cost = sum(e.cost for _, e in pairs)
        cloud = sum(e.turn.cloud_quality for _, e in pairs)
        got, cost = sum(e.turn.local_quality for _, e in pairs), 0.0
        points = [(0.0, got / cloud)]
        for _, e in pairs:  # one more turn to Cerebras at a time, highest score first
            got += e.turn.cloud_quality - e.turn.local_quality
            cost += e.cost
            points.append((cost / total_cost, got / cloud))
        out[d] = sum(
            max(q for c, q in points if c <= limit + 1e-9) for limit in CV_COSTS
        ) / len(CV_COSTS)
    return out


def build(rows: Sequence[Example]) -> dict[str, object]:
    models = {which: train(rows, which) for which in ("ask", "draft")}
    return {
        "format": "glm-token-saver-router",
        "version": 1,
        "hash_bits": HASH_BITS,
        "trained_on": {
            "data": "bench/data/routellm (RouteLLM, Mixtral-8x7B as local, GPT-4 as cloud)",
            "split": "tuning only: MT-Bench ids 81-120, GSM8K rows 0-659",
            "rows": len(rows),
            "positives": sum(e.bad for e in rows),
            "label": f"GSM8K: local wrong; MT-Bench: local judge score >= {MT_BENCH_GAP:g} below "
            "cloud",
            "training_labels": LABELS,
            "outcome_floor": OUTCOME_FLOOR,
            "l2": L2,
            "folds": "GSM8K row mod 5; MT-Bench one fold per category",
            "iterations": ITERATIONS,
            "threshold_rule": THRESHOLD_RULE,
        },
        "models": {name: m.to_json() for name, m in models.items()},
    }


def tuning_examples() -> list[Example]:
    router = Router(parse_config({"routing": {"router": "heuristic"}}, env={}), store_path=None)
    rows = [e for e in examples(load_all(), router) if e.turn.split == "tuning"]
    router.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--check", action="store_true", help="fail if the shipped file differs")
    parser.add_argument(
        "--cv",
        action="store_true",
        help="print the cross-validation objective of the current settings (tuning split only)",
    )
    args = parser.parse_args()
    rows = tuning_examples()
    if args.cv:
        for which in ("ask", "draft"):
            figures = cv_objective(rows, out_of_fold(rows, which))
            mean = sum(figures.values()) / len(figures)
            cells = ", ".join(f"{d} {v:.4f}" for d, v in figures.items())
            print(f"{which} (l2 {L2[which]:g}, labels {LABELS[which]}): {mean:.4f} ({cells})")
        return 0
    text = json.dumps(build(rows), separators=(",", ":")) + "\n"
    if args.check:
        same = args.out.read_text(encoding="utf-8") == text
        print("weights match" if same else f"{args.out} differs from a fresh training run")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    data = json.loads(text)
    for name, model in data["models"].items():
        print(f"{name}: {len(model['weights'])} weights, threshold {model['threshold']}")
    print(f"wrote {args.out} ({len(text) / 1024:.0f} KiB) from {len(rows)} tuning rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
