"""The report as aligned text for people, or as one JSON document; secrets never appear.

Checks never put a key into their text, but an upstream's error wording is quoted as sent, so
every string is also scrubbed of the configured keys before it is printed.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from typing import Any

import orjson

from gateway.config import redact
from gateway.doctor.report import Report

REDACTED = "[redacted]"
_WIDTH = 100


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """`value` (a string, or lists and dicts of them) with every secret replaced."""
    return redact(value, secrets, REDACTED)


def render_json(report: Report, secrets: Iterable[str]) -> str:
    """`{"config", "exit_status", "summary", "checks": [{name, verdict, detail, fix, figures}]}`."""
    document = {
        "config": report.source,
        "exit_status": report.exit_status,
        "summary": report.counts(),
        "checks": [c.as_dict() for c in report.checks],
    }
    return orjson.dumps(scrub(document, secrets), option=orjson.OPT_INDENT_2).decode()


def render_text(report: Report, secrets: Iterable[str]) -> str:
    """One line per check (verdict, name, detail wrapped under itself), `fix:` below each warn
    and fail, then a summary with the exit status."""
    name_width = max((len(c.name) for c in report.checks), default=0)
    indent = " " * (4 + 2 + name_width + 2)
    lines = [f"GLM Token Saver doctor: {report.source}", ""]
    for check in report.checks:
        head = f"{check.verdict:<4}  {check.name:<{name_width}}  "
        lines += textwrap.wrap(
            check.detail, _WIDTH, initial_indent=head, subsequent_indent=indent
        ) or [head.rstrip()]
        if check.fix:
            fix_indent = indent + " " * len("fix: ")
            lines += textwrap.wrap(
                f"fix: {check.fix}", _WIDTH, initial_indent=indent, subsequent_indent=fix_indent
            )
    counts = report.counts()
    summary = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
    lines += ["", f"{summary}: exit status {report.exit_status}"]
    return str(scrub("\n".join(lines), secrets))
