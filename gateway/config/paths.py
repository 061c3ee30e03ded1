"""Where the config file is: the default path, and the parser (with its `--config` option) of
each command that reads it, written once."""

from __future__ import annotations

import argparse
from pathlib import Path

# The file the commands read when no --config is given and it exists (see `config_path`).
DEFAULT_CONFIG_PATH = Path("conf/gateway.yaml")


def config_path(given: str | Path | None) -> Path | None:
    """The config file a command reads: `given`, else DEFAULT_CONFIG_PATH when it exists, else
    None (the built-in defaults)."""
    if given is not None:
        return Path(given)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def command_parser(
    prog: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """The parser of a command that reads the config, with its first option `--config FILE`
    (`config_path(args.config)` is the file to read)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog)
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help=f"YAML config (default: {DEFAULT_CONFIG_PATH} if present, else built-in)",
    )
    return parser
