"""The config start-up runs: the file, then the flags; the upstreams are checked against the
address the gateway will listen on, once the flags apply."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.cli import build_parser, resolve_config
from gateway.config import ConfigError, GatewayConfig


def resolve(path: Path, *flags: str) -> GatewayConfig:
    args = build_parser().parse_args(["--config", str(path), *flags])
    args.demo = args.demo or args.demo_traffic  # as main() does
    return resolve_config(args)


@pytest.fixture
def at_8000(tmp_path: Path) -> Path:
    """A file whose local upstream listens on the default server.port (vLLM's default port)."""
    path = tmp_path / "gw.yaml"
    models = {"local": {"endpoint": "http://127.0.0.1:8000/v1"}}
    path.write_text(yaml.safe_dump({"models": models}), "utf-8")
    return path


@pytest.mark.parametrize(
    "flags",
    [("--port", "9000"), ("--host", "192.168.1.10"), ("--demo",), ("--local-model",)],
)
def test_flags_that_move_the_gateway_or_replace_the_upstreams_let_it_start(
    at_8000: Path, flags: tuple[str, ...]
) -> None:
    config = resolve(at_8000, *flags)
    assert config.local.endpoint == "http://127.0.0.1:8000/v1"


def test_without_them_the_file_points_the_gateway_at_itself(at_8000: Path) -> None:
    with pytest.raises(ConfigError, match=r"models\.local\.endpoint: .*server\.port 8000"):
        resolve(at_8000)


def test_flags_that_move_the_gateway_onto_an_upstream_stop_it(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"  # the default local endpoint: http://127.0.0.1:41447/v1
    path.write_text(yaml.safe_dump({"storage": {"log_level": "INFO"}}), "utf-8")
    resolve(path)
    with pytest.raises(ConfigError, match=r"models\.local\.endpoint: .*server\.port 41447"):
        resolve(path, "--port", "41447", "--host", "localhost")


def test_a_name_the_file_gives_is_still_checked(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump({"rate_limits": {"reactive_strategies": ["nope"]}}), "utf-8")
    with pytest.raises(ConfigError, match=r"rate_limits\.reactive_strategies: unknown strategy"):
        resolve(path, "--port", "9000")
