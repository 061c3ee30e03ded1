"""An upstream that is the gateway itself: refused at start-up, since every request would call
the gateway again until the connections or the timeouts ran out.

An endpoint names the gateway's own address when its port is `server.port` and its host is the
listening host: the same name, a loopback name for a loopback host (`localhost` resolves to
127.0.0.1 and ::1), or, when the gateway listens on every address (0.0.0.0, ::), a loopback or
wildcard host. A gateway listening on every address is also reachable on the machine's other
addresses; those are not looked up (no resolver call at start-up), so such an endpoint passes.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from gateway.config.reader import ConfigError
from gateway.config.schema import GatewayConfig
from gateway.config.secrets import mask_url

_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def names_listening_host(host: str, listening: str) -> bool:
    """Whether a client connecting to `host` reaches a server listening on `listening` (both
    lower-case; IPv6 without brackets), by the rules of the module docstring."""
    if host == listening:
        return True
    if listening in _WILDCARDS:
        return host in _WILDCARDS or _loopback(host)
    if listening == "localhost":
        return host in ("127.0.0.1", "::1")
    return host == "localhost" and listening in ("127.0.0.1", "::1")


def check_not_own_address(config: GatewayConfig) -> None:
    """Raise ConfigError naming `models.<name>.endpoint` when an enabled upstream's endpoint is
    the gateway's own listening address (`server.host`, `server.port`)."""
    server = config.server
    if server.port == 0:  # a port the system picks cannot be named in advance
        return
    listening = server.host.strip("[]").lower()
    for name, model in config.models.items():
        if not model.enabled:
            continue
        try:
            parts = urlsplit(model.endpoint)
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            continue  # not a URL this check can read; the upstream's own checks report it
        host = (parts.hostname or "").lower()
        if port == server.port and names_listening_host(host, listening):
            raise ConfigError(
                f"{config.source}: models.{name}.endpoint: {mask_url(model.endpoint)} is this "
                f"gateway's own address (server.host {server.host}, server.port "
                f"{server.port}): every request would call the gateway again; point it at "
                f"the {name} upstream"
            )
