"""What the doctor found: one `Check` per question asked, gathered in a `Report`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Verdict = Literal["ok", "warn", "fail", "skip"]
VERDICTS: tuple[Verdict, ...] = ("ok", "warn", "fail", "skip")
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2  # as `glm-gateway` itself exits on a bad config


@dataclass(slots=True)
class Check:
    """One verdict. `fix` is set for every warn and fail; `figures` holds the measured numbers
    (JSON-serialisable, never a secret)."""

    name: str
    verdict: Verdict
    detail: str
    fix: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict in ("warn", "fail") and not self.fix:
            raise ValueError(f"check {self.name}: a {self.verdict} must name its fix")

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "detail": self.detail,
            "fix": self.fix or None,
            "figures": self.figures,
        }


def ok(name: str, detail: str, **figures: Any) -> Check:
    return Check(name, "ok", detail, figures=figures)


def warn(name: str, detail: str, fix: str, **figures: Any) -> Check:
    return Check(name, "warn", detail, fix, figures)


def fail(name: str, detail: str, fix: str, **figures: Any) -> Check:
    return Check(name, "fail", detail, fix, figures)


def skip(name: str, detail: str) -> Check:
    return Check(name, "skip", detail)


@dataclass(slots=True)
class Report:
    """All checks in the order they were asked. `config_error` marks an invalid config."""

    source: str
    checks: list[Check] = field(default_factory=list)
    config_error: bool = False

    def counts(self) -> dict[Verdict, int]:
        return {v: sum(c.verdict == v for c in self.checks) for v in VERDICTS}

    @property
    def exit_status(self) -> int:
        """2 for an invalid config, 1 when any check failed, else 0 (warnings alone pass)."""
        if self.config_error:
            return EXIT_BAD_CONFIG
        return EXIT_FAILED if any(c.verdict == "fail" for c in self.checks) else EXIT_OK
