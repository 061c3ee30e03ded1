"""The one aiohttp client of the upstream calls: its session, connector settings and timeouts.

The gateway opens one pooled session for its lifetime (`open_session`) and closes it at shutdown;
each upstream decides per call whether its connection may be reused (llama.cpp's may not, see
gateway.upstreams.llamacpp).
"""

from __future__ import annotations

import aiohttp

from gateway.config import ModelConfig

# Seconds a resolved upstream host name is kept (the endpoints are fixed by config).
DNS_CACHE_S = 300


def open_session(*, pooled: bool = True) -> aiohttp.ClientSession:
    """A client session for upstream calls; the caller closes it (`await session.close()`).

    Pooled: no limit on connections (the gate and the upstreams' own limits bound them) and
    closed TLS transports cleaned up. Not pooled: a fresh connection per request (the doctor's
    probes, one-off checks)."""
    if pooled:
        connector = aiohttp.TCPConnector(
            limit=0, ttl_dns_cache=DNS_CACHE_S, enable_cleanup_closed=True
        )
    else:
        connector = aiohttp.TCPConnector(force_close=True)
    return aiohttp.ClientSession(connector=connector)


def request_timeout(config: ModelConfig) -> aiohttp.ClientTimeout:
    """Only the connect is timed by aiohttp; first token and idle gaps are timed by the stream,
    which knows which of them it is waiting for."""
    return aiohttp.ClientTimeout(total=None, sock_connect=config.timeouts.connect, sock_read=None)
