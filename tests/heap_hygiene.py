"""Pytest plugin: the test process's heap stays the size of one test, so that the garbage
collector's full passes stay short.

Integration tests share one event loop with the simulators they drive, and the simulators pace
answers by the clock: a pause of the whole process looks to a test like a stalled upstream that
then sends at once everything it owed. A full collection is such a pause, and it walks every
tracked object. Two things made it long:

- aiohttp's `web_app._cached_build_middleware` (an `lru_cache` of 1,024 entries keyed by a
  handler and its applications) kept every test's gateway and simulators, with all they hold,
  alive to the end of the session: 850,000 tracked objects by the end of the integration tier,
  and full collections of up to 0.7 s. A gateway process has one application, so the cache is
  bounded there; here it is cleared after each test's teardown.
- the objects made by imports and collection (about 330,000), which every full collection
  walked again: they are moved out of the collector's sight (`gc.freeze`) once collected.
"""

from __future__ import annotations

import gc
from collections.abc import Generator

import pytest
from aiohttp import web_app


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.collect()
    gc.freeze()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    try:
        yield
    finally:
        cache = getattr(web_app, "_cached_build_middleware", None)
        if cache is not None:
            cache.cache_clear()
