"""`GET /requests` (recent requests, newest first, filtered, paged by ledger row id) and
`GET /requests/{id}` (one full ledger row with every upstream call it made).

Paging: `before` is a ledger row id; a page holds rows with smaller ids, and `next_before` is the
value to pass for the next (older) page, null when there is none. Secrets never appear: the
ledger stores no keys, and any configured key that still reaches a text field (an upstream's
error message, say) is replaced by `[REDACTED]`.

Refused requests (outcome `rejected`, gateway.accounting.refusals) are listed only when filtered
for.

Reads are synchronous SQLite: call these functions from a thread.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import orjson

from gateway.accounting.bill import cost_saved_usd
from gateway.accounting.ledger import Ledger, LedgerRow
from gateway.accounting.records import REFUSED, UPSTREAM_NAMES
from gateway.dashboard.history import NO_UPSTREAM
from gateway.logs import REDACTED

OUTCOMES = ("ok", "error", "client_disconnected", "rejected")
UPSTREAM_FILTERS = (*UPSTREAM_NAMES, NO_UPSTREAM)
MAX_LIMIT = 200
DEFAULT_LIMIT = 50

_PARENS = re.compile(r"\([^()]*\)")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_ROW_ID = re.compile(r"[0-9]{1,18}")


def reason_kind(reason: str | None) -> str:
    """A routing reason without its per-request details, for counting decisions by kind.

    'smart_routing: complex: keyword 'x' -> cerebras; fallback to local (...)' becomes
    'smart_routing: complex + fallback': the strategy, the first word group of its decision, and
    whether a fallback happened. Numbers, quotes and parenthesised details are dropped.
    """
    if not reason:
        return "none"
    first = reason.split(";", 1)[0]
    for _ in range(3):  # nested parentheses, innermost first
        first = _PARENS.sub("", first)
    first = _QUOTED.sub("", first)
    parts = [p.strip() for p in first.split(":")]
    head = " ".join(parts[0].split())
    kind = head
    if len(parts) > 1:
        decision = re.split(r",|->", parts[1], maxsplit=1)[0]
        words: list[str] = []
        for word in decision.split():
            if any(ch.isdigit() for ch in word) or word.startswith("~"):
                break
            words.append(word)
        if words:
            kind = f"{head}: {' '.join(words[:3])}"
    if "fallback to" in reason:
        kind += " + fallback"
    return kind[:80]


class Redactor:
    """Replaces configured secrets in strings (keys shorter than 4 characters are ignored)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = tuple(
            sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        )

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, REDACTED)
        return value

    def deep(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.deep(v) for v in value]
        return value


def summary(row: LedgerRow) -> dict[str, Any]:
    """One row of the recent-requests list."""
    local = row.local_prompt_tokens + row.local_completion_tokens
    cerebras = row.cerebras_prompt_tokens + row.cerebras_completion_tokens
    return {
        "id": row.id,
        "request_id": row.request_id,
        "started_at": row.started_at,
        "strategy": row.strategy,
        "model_used": row.model_used,
        "outcome": row.outcome,
        "http_status": row.http_status,
        "stream": row.stream,
        "fallback": row.fallback,
        "error_type": row.error_type,
        "routing_reason": row.routing_reason,
        "reason_kind": reason_kind(row.routing_reason),
        "tokens": {"local": local, "cerebras": cerebras, "total": local + cerebras},
        "cost_usd": round(row.cost_usd, 6),
        "cerebras_cost_usd": round(row.cerebras_cost_usd, 6),
        "cost_saved_usd": cost_saved_usd(row.counterfactual_usd, row.cerebras_cost_usd),
        "ttft_ms": None if row.ttft_s is None else round(row.ttft_s * 1000, 1),
        "duration_ms": round(row.duration_s * 1000, 1),
        "speculative": None
        if row.accepted is None
        else {"accepted": row.accepted, "decided_by": row.decided_by},
        "calls": len(orjson.loads(row.calls)),
    }


def detail(row: LedgerRow) -> dict[str, Any]:
    """The full ledger row, its calls parsed, plus the list view's derived fields."""
    full = asdict(row)
    full["calls"] = orjson.loads(row.calls)
    full["reason_kind"] = reason_kind(row.routing_reason)
    full["cost_saved_usd"] = cost_saved_usd(row.counterfactual_usd, row.cerebras_cost_usd)
    full["object"] = "ledger.request"
    return full


def list_requests(
    ledger: Ledger,
    *,
    limit: int,
    before: int | None,
    upstream: str | None,
    outcome: str | None,
    redactor: Redactor,
) -> dict[str, Any]:
    """A page of requests, newest first (see the module docstring for paging)."""
    clauses: list[str] = []
    params: list[Any] = []
    if before is not None:
        clauses.append("id < ?")
        params.append(before)
    if upstream == NO_UPSTREAM:
        clauses.append("model_used IS NULL")
    elif upstream is not None:
        clauses.append("model_used = ?")
        params.append(upstream)
    if outcome is not None:
        clauses.append("outcome = ?")
        params.append(outcome)
    else:  # refusals were never served: listed only when asked for
        clauses.append("outcome != ?")
        params.append(REFUSED)
    where = " AND ".join(clauses) or "1"
    rows = ledger.select_rows(where, tuple(params), limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "object": "list",
        "data": [redactor.deep(summary(r)) for r in rows],
        "has_more": more,
        "next_before": rows[-1].id if more and rows else None,
    }


def find_request(ledger: Ledger, ident: str, redactor: Redactor) -> dict[str, Any] | None:
    """One request by ledger row id (all digits) or else by request id (the newest such row)."""
    if _ROW_ID.fullmatch(ident):
        rows = ledger.select_rows("id = ?", (int(ident),), limit=1)
    else:
        rows = ledger.select_rows("request_id = ?", (ident,), limit=1)
    return redactor.deep(detail(rows[0])) if rows else None
