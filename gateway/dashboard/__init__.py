"""The live dashboard at `/dashboard` and its JSON endpoints (`/stats/history`, `/requests`,
`/requests/{id}`, `/dashboard/summary`); see gateway.dashboard.routes."""

from __future__ import annotations

from gateway.dashboard.routes import PAGE_PATH, STATIC_PREFIX, setup_dashboard

__all__ = ["PAGE_PATH", "STATIC_PREFIX", "setup_dashboard"]
