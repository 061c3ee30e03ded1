"""An upstream that is the gateway itself: refused at start-up, since every request would call
the gateway again until the connections or the timeouts ran out.

An endpoint names the gateway's own address when its port is `server.port` and its host is the
listening host: the same name or address, however written (`[::1]`, `0:0:0:0:0:0:0:1`,
`::ffff:127.0.0.1`, `127.1`, `localhost.`, any case), a loopback name for a loopback host
(`localhost` resolves to 127.0.0.1 and ::1), or, when the gateway listens on every address of a
family (0.0.0.0 for IPv4, :: for IPv6 only, as asyncio and uvloop bind it; '' for both), a
loopback or wildcard host of that family. A gateway listening on every address is also
reachable on the machine's other addresses; those are not looked up (no resolver call at
start-up), so such an endpoint passes.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

from gateway.config.reader import ConfigError
from gateway.config.schema import GatewayConfig
from gateway.config.secrets import URL_MASK, mask_url, redact

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_DEFAULT_PORTS = {"http": 80, "https": 443}
_V4_ANY, _V4_LOOPBACK = ipaddress.IPv4Address("0.0.0.0"), ipaddress.IPv4Address("127.0.0.1")
_V6_ANY, _V6_LOOPBACK = ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1")
_LOOPBACKS: frozenset[Address | str] = frozenset({_V4_LOOPBACK, _V6_LOOPBACK})
# The IPv4 forms the C library reads without a lookup besides the dotted quad (127.1, 0x7f.1).
_SHORT_IPV4 = re.compile(r"[0-9a-fx.]+")


def _canonical(host: str) -> Address | str:
    """`host` (a URL's or `server.host`) as the connection reads it: an address however it is
    written, IPv4-mapped IPv6 as IPv4; else the lower-case name without its trailing dot."""
    name = host.strip("[]").lower()
    try:
        address: Address = ipaddress.ip_address(name)
    except ValueError:
        if not _SHORT_IPV4.fullmatch(name):
            return name.rstrip(".")
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(name))  # no lookup: numbers only
        except OSError:
            return name.rstrip(".")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _any_of_family(host: Address | str, wildcard: Address) -> bool:
    """Whether `host` reaches a server listening on every address of `wildcard`'s family."""
    if host == "localhost":
        return True
    if isinstance(host, str) or host.version != wildcard.version:
        return False
    return host == wildcard or host.is_loopback


def names_listening_host(host: str, listening: str) -> bool:
    """Whether a client connecting to `host` reaches a server listening on `listening`, by the
    rules of the module docstring."""
    client, server = _canonical(host), _canonical(listening)
    if not client:  # no host: not a URL a client can call
        return False
    if client == server:
        return True
    if server == "":
        return _any_of_family(client, _V4_ANY) or _any_of_family(client, _V6_ANY)
    if not isinstance(server, str) and server in (_V4_ANY, _V6_ANY):
        return _any_of_family(client, server)
    if server == "localhost":
        return client in _LOOPBACKS
    return client == "localhost" and server in _LOOPBACKS


def check_not_own_address(config: GatewayConfig) -> None:
    """Raise ConfigError naming `models.<name>.endpoint` when an enabled upstream's endpoint is
    the gateway's own listening address (`server.host`, `server.port`)."""
    server = config.server
    if server.port == 0:  # a port the system picks cannot be named in advance
        return
    for name, model in config.models.items():
        if not model.enabled:
            continue
        try:
            parts = urlsplit(model.endpoint)
            port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            continue  # not a URL this check can read; the upstream's own checks report it
        if port == server.port and names_listening_host(parts.hostname or "", server.host):
            message = (
                f"{config.source}: models.{name}.endpoint: {mask_url(model.endpoint)} is this "
                f"gateway's own address (server.host {server.host}, server.port "
                f"{server.port}): every request would call the gateway again; point it at "
                f"the {name} upstream"
            )
            # A key may sit elsewhere in the URL than its password (a token as the user name).
            raise ConfigError(redact(message, config.secrets(), URL_MASK))
