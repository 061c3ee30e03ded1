"""The event loop the commands run on: uvloop when installed, else asyncio's own."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

LOOP_ENV = "GLM_GATEWAY_LOOP"


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (measurably faster relay on Linux), else asyncio's own loop.

    `GLM_GATEWAY_LOOP=asyncio` forces the standard loop; `uvloop` insists on uvloop."""
    choice = (choice or os.environ.get(LOOP_ENV) or "auto").lower()
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
