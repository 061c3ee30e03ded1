"""aioresponses for unit tests of request building and error mapping (no socket).

aioresponses 0.7.9 predates aiohttp 3.14's required `stream_writer` argument of ClientResponse;
`MockedHTTP` fills it in. The `mocked` fixture in conftest.py yields one.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import aiohttp
from aioresponses import aioresponses
from yarl import URL


class _MockResponse(aiohttp.ClientResponse):
    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


class MockedHTTP(aioresponses):
    """aioresponses whose responses build on aiohttp 3.14."""

    def add(self, url: Any, method: str = "GET", *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("response_class", _MockResponse)
        super().add(url, method, *args, **kwargs)
