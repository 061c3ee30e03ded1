"""`glm-gateway config check [--config F]`: validate a config as start-up does and print the
effective values, secrets masked. Exit 0 when valid, 2 on any error (the message names the key).

Secrets (upstream API keys, client keys, passwords inside URLs) are never printed: keys show
only whether they are set, URLs show `***` for their password (GatewayConfig.secrets).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from gateway.config import (
    ConfigError,
    GatewayConfig,
    command_parser,
    config_path,
    load_config,
    mask_url,
    redact,
)
from gateway.strategies import known_names

MASK = "***"


def build_parser() -> argparse.ArgumentParser:
    return command_parser(
        "glm-gateway config check",
        "Validate the config as start-up does and print the effective values with secrets "
        "masked; exit 0 when valid, 2 on any error.",
    )


def load_checked_config(path: Path | None) -> GatewayConfig:
    """Load and validate as start-up does without flags (`load_config` with the registry's
    names); raise ConfigError naming the key."""
    return load_config(path, names=known_names())


def _masked_key(key: str) -> str:
    return f"{MASK} (set)" if key else "(not set)"


def effective(config: GatewayConfig) -> dict[str, Any]:
    """The config as plain data: keys replaced by whether they are set, passwords in URLs by
    MASK, and any other value that holds a secret of the config masked too."""
    data = asdict(config)
    del data["raw"]  # as written: may hold a literal key
    for name, model in config.models.items():
        data["models"][name]["api_key"] = _masked_key(model.api_key)
        data["models"][name]["endpoint"] = mask_url(model.endpoint)
    keys = config.auth.api_keys
    data["auth"]["api_keys"] = f"{MASK} ({len(keys)} set)" if keys else "(none set)"
    data["state"]["redis_url"] = mask_url(config.state.redis_url)
    scrubbed: dict[str, Any] = redact(data, config.secrets(), MASK)
    return scrubbed


def render(config: GatewayConfig) -> str:
    """The effective config as YAML, secrets masked."""
    body = yaml.safe_dump(effective(config), sort_keys=False, default_flow_style=False)
    return f"# {config.source}: valid\n{body}"


def main(argv: Sequence[str]) -> int:
    """`config check`: argv is what follows the two words. Returns the exit status."""
    args = build_parser().parse_args(list(argv))
    try:
        config = load_checked_config(config_path(args.config))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    print(render(config), end="")
    return 0
