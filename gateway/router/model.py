"""A logistic-regression model over sparse features: score, load, save, fit, one SGD step.

`score(x)` is sigmoid(w . x) over the non-zero entries of x only, so scoring costs one dict walk
(about a hundred multiplications per ask). Weights are stored sparse (non-zero entries only) in
JSON. `fit` is deterministic: full-batch gradient descent with Adam, fixed iteration count, no
randomness; the same data always gives the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.router.features import DIMENSION, Features

_CLIP = 35.0


def sigmoid(z: float) -> float:
    z = max(-_CLIP, min(_CLIP, z))
    return 1.0 / (1.0 + math.exp(-z))


@dataclass(slots=True)
class LinearModel:
    """p(local answer not good enough) = sigmoid(sum of weights[i] * x[i]); the bias is a
    dense feature (index of "bias"), so there is no separate intercept."""

    weights: dict[int, float] = field(default_factory=dict)
    threshold: float = 0.5

    def logit(self, x: Features) -> float:
        w = self.weights
        return sum(w.get(i, 0.0) * v for i, v in x.items())

    def score(self, x: Features) -> float:
        return sigmoid(self.logit(x))

    def sgd_step(
        self, x: Features, label: bool, *, rate: float, weight: float = 1.0, l2: float = 0.0
    ) -> dict[int, float]:
        """One logistic-loss gradient step on one example; returns the weights it changed."""
        error = self.score(x) - (1.0 if label else 0.0)
        changed: dict[int, float] = {}
        for i, v in x.items():
            old = self.weights.get(i, 0.0)
            new = old - rate * weight * (error * v + l2 * old)
            self.weights[i] = new
            changed[i] = new
        return changed

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": round(self.threshold, 6),
            "weights": [[i, round(w, 4)] for i, w in sorted(self.weights.items()) if round(w, 4)],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LinearModel:
        """Raises ValueError on a malformed model (index out of range, not numbers)."""
        try:
            weights = {int(i): float(w) for i, w in data["weights"]}
            threshold = float(data.get("threshold", 0.5))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed router model: {exc}") from None
        if any(not 0 <= i < DIMENSION for i in weights) or not 0.0 <= threshold <= 1.0:
            raise ValueError("malformed router model: index or threshold out of range")
        return cls(weights, threshold)


def fit(
    examples: Sequence[Features],
    labels: Sequence[bool],
    *,
    l2: float = 1e-3,
    iterations: int = 300,
    rate: float = 0.05,
    sample_weights: Sequence[float] | None = None,
) -> LinearModel:
    """Logistic regression by full-batch Adam on the mean weighted log-loss plus L2/2 |w|^2."""
    n = len(examples)
    sw = list(sample_weights) if sample_weights is not None else [1.0] * n
    total = sum(sw) or 1.0
    used = sorted({i for x in examples for i in x})
    w = dict.fromkeys(used, 0.0)
    m = dict.fromkeys(used, 0.0)
    s = dict.fromkeys(used, 0.0)
    b1, b2, eps = 0.9, 0.999, 1e-8
    for step in range(1, iterations + 1):
        grad = {i: l2 * w[i] for i in used}
        for x, y, weight in zip(examples, labels, sw, strict=True):
            error = (sigmoid(sum(w[i] * v for i, v in x.items())) - float(y)) * weight / total
            for i, v in x.items():
                grad[i] += error * v
        c1, c2 = 1 - b1**step, 1 - b2**step
        for i in used:
            g = grad[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            s[i] = b2 * s[i] + (1 - b2) * g * g
            w[i] -= rate * (m[i] / c1) / (math.sqrt(s[i] / c2) + eps)
    return LinearModel({i: v for i, v in w.items() if v})
