"""Building a GatewayConfig: one pass over the YAML, unknown keys refused, the names it gives
checked; bad configuration stops the start with a message that names the key."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gateway.config.own_address import check_not_own_address
from gateway.config.reader import ConfigError, Reader, expand_env
from gateway.config.schema import GatewayConfig, KnownNames
from gateway.config.sections import read_config


def cross_check(config: GatewayConfig, names: KnownNames) -> None:
    """Checks between keys: the names the config gives (`check_names`) and no upstream that is
    the gateway itself (gateway.config.own_address); raise ConfigError naming the key.

    parse_config runs it when given the names; create_app runs it again for configs changed
    after parsing (--strategy, --host, --port, the upstreams of --demo and --local-model).
    """
    check_not_own_address(config)
    check_names(config, names)


def check_names(config: GatewayConfig, names: KnownNames) -> None:
    """The strategy and scorer names the config gives are among `names`; raise ConfigError
    naming the key."""
    scorer = config.speculative_decoding.scorer
    if scorer not in names.scorers:
        raise ConfigError(
            f"{config.source}: speculative_decoding.scorer: must be one of "
            f"{', '.join(names.scorers)}, got {scorer!r}"
        )
    known = sorted(names.strategies)
    reactive = config.rate_limits.reactive_strategies
    named = [("routing.strategy", config.routing.strategy)]
    named += [("routing.client_strategies", n) for n in config.routing.client_strategies or ()]
    named += [("rate_limits.reactive_strategies", n) for n in reactive]
    for key, name in named:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{config.source}: {key}: unknown strategy {name!r}{hint} "
                f"(available: {', '.join(known)})"
            )


def parse_config(
    data: Mapping[str, Any] | None,
    *,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    names: KnownNames | None = None,
) -> GatewayConfig:
    """Build a validated GatewayConfig from parsed YAML (None means all defaults).

    One pass: types and bounds while reading, then every key never read is refused (naming the
    closest known one), then, given `names`, the names the config gives (`cross_check`; without
    them the caller runs it, as create_app does). Raises ConfigError naming file and key path.
    """
    env = os.environ if env is None else env
    top = Reader(expand_env(data or {}, env), "", source)
    config = read_config(top, env, source=source, raw=dict(data or {}))
    unknown = [message for reader in top.readers for message in reader.unknown_keys()]
    if unknown:
        raise ConfigError("\n".join(unknown))
    if names is not None:
        cross_check(config, names)
    return config


def load_config(
    path: str | Path | None,
    env: Mapping[str, str] | None = None,
    *,
    names: KnownNames | None = None,
) -> GatewayConfig:
    """Read and validate a YAML config file (see parse_config); None gives the built-in
    defaults."""
    if path is None:
        return parse_config(None, source="<defaults>", env=env, names=names)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    return parse_config(data, source=str(p), env=env, names=names)
