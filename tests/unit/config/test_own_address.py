"""An upstream that is the gateway's own listening address stops the start, naming the key."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config
from gateway.config.own_address import check_not_own_address, names_listening_host
from gateway.strategies import known_names

PASSWORD = "pw-own-address-7f6e5d"


def config(host: str, port: int, local: str, cerebras: str = "https://api.cerebras.ai/v1"):
    return parse_config(
        {
            "server": {"host": host, "port": port},
            "models": {"local": {"endpoint": local}, "cerebras": {"endpoint": cerebras}},
        },
        source="gw.yaml",
        env={},
    )


@pytest.mark.parametrize(
    ("host", "port", "endpoint"),
    [
        ("127.0.0.1", 8000, "http://127.0.0.1:8000/v1"),
        ("127.0.0.1", 8000, "http://localhost:8000/v1"),
        ("127.0.0.1", 8000, "http://LOCALHOST:8000"),
        ("localhost", 8000, "http://127.0.0.1:8000/v1"),
        ("::1", 8000, "http://[::1]:8000/v1"),
        ("[::1]", 8000, "http://localhost:8000/v1"),
        ("0.0.0.0", 8000, "http://127.0.0.1:8000/v1"),
        ("0.0.0.0", 8000, "http://127.0.0.5:8000/v1"),
        ("0.0.0.0", 8000, "http://0.0.0.0:8000/v1"),
        ("::", 8000, "http://[::1]:8000/v1"),
        ("192.168.1.10", 8000, "http://192.168.1.10:8000/v1"),
        ("127.0.0.1", 80, "http://127.0.0.1/v1"),
        ("127.0.0.1", 443, "https://localhost/v1"),
        # The same address written another way, as the connection reads it.
        ("localhost", 8000, "http://[0:0:0:0:0:0:0:1]:8000/v1"),
        ("::1", 8000, "http://[0:0:0:0:0:0:0:1]:8000/v1"),
        ("127.0.0.1", 8000, "http://[::ffff:127.0.0.1]:8000/v1"),
        ("0.0.0.0", 8000, "http://[::ffff:127.0.0.1]:8000/v1"),
        ("127.0.0.1", 8000, "http://127.1:8000/v1"),
        ("127.0.0.1", 8000, "http://localhost.:8000/v1"),
        ("gw.example.lan", 8000, "http://GW.Example.LAN.:8000/v1"),
        ("0:0:0:0:0:0:0:0", 8000, "http://[::1]:8000/v1"),
        ("::", 8000, "http://localhost:8000/v1"),
        ("", 8000, "http://127.0.0.1:8000/v1"),  # every address of both families
        ("", 8000, "http://[::1]:8000/v1"),
    ],
)
def test_an_upstream_at_the_gateways_own_address_is_refused(
    host: str, port: int, endpoint: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        check_not_own_address(config(host, port, endpoint))
    message = str(caught.value)
    assert message.startswith("gw.yaml: models.local.endpoint: ")
    assert "own address" in message and f"server.port {port}" in message


@pytest.mark.parametrize(
    ("host", "port", "endpoint"),
    [
        ("127.0.0.1", 8000, "http://127.0.0.1:8001/v1"),  # another port
        ("127.0.0.1", 8000, "http://127.0.0.2:8000/v1"),  # another loopback address
        ("127.0.0.1", 8000, "http://192.168.1.10:8000/v1"),  # another machine
        ("192.168.1.10", 8000, "http://127.0.0.1:8000/v1"),  # not listened on
        ("127.0.0.1", 8000, "http://127.0.0.1/v1"),  # port 80
        ("127.0.0.1", 0, "http://127.0.0.1:0/v1"),  # a port picked at start-up
        # A wildcard listens on one family: asyncio and uvloop bind :: with IPV6_V6ONLY.
        ("::", 8000, "http://127.0.0.1:8000/v1"),
        ("::", 8000, "http://0.0.0.0:8000/v1"),
        ("0.0.0.0", 8000, "http://[::1]:8000/v1"),
        ("127.0.0.1", 8000, "http://[::ffff:127.0.0.2]:8000/v1"),
    ],
)
def test_another_address_passes(host: str, port: int, endpoint: str) -> None:
    check_not_own_address(config(host, port, endpoint))


def test_the_cerebras_endpoint_too_and_without_its_password() -> None:
    own = f"http://user:{PASSWORD}@127.0.0.1:8000/v1"
    with pytest.raises(ConfigError, match=r"models\.cerebras\.endpoint: ") as caught:
        check_not_own_address(config("127.0.0.1", 8000, "http://127.0.0.1:9/v1", own))
    assert PASSWORD not in str(caught.value) and ":***@" in str(caught.value)


def test_no_key_of_the_config_is_shown_wherever_the_url_holds_it() -> None:
    """A key as the URL's user name is not a password, yet still a secret of the config."""
    data = {
        "server": {"port": 8000},
        "models": {"local": {"endpoint": f"http://{PASSWORD}@localhost:8000/v1"}},
        "auth": {"api_keys": [PASSWORD]},
    }
    with pytest.raises(ConfigError, match=r"models\.local\.endpoint: http://\*\*\*@") as caught:
        check_not_own_address(parse_config(data, env={}))
    assert PASSWORD not in str(caught.value)


def test_a_disabled_upstream_is_not_called_so_passes() -> None:
    data = {
        "server": {"port": 8000},
        "models": {"local": {"endpoint": "http://127.0.0.1:8000/v1", "enabled": False}},
    }
    check_not_own_address(parse_config(data, env={}))


def test_parse_config_with_the_names_refuses_it() -> None:
    """What start-up and `config check` run (create_app runs it again after --host/--port)."""
    data = {"server": {"port": 8123}, "models": {"local": {"endpoint": "http://localhost:8123"}}}
    with pytest.raises(ConfigError, match=r"models\.local\.endpoint: "):
        parse_config(data, env={}, names=known_names())


def test_names_listening_host_is_symmetric_for_loopback_names() -> None:
    assert names_listening_host("localhost", "127.0.0.1")
    assert names_listening_host("127.0.0.1", "localhost")
    assert not names_listening_host("example.com", "127.0.0.1")
    assert not names_listening_host("10.0.0.1", "0.0.0.0")
