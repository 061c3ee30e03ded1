"""Where the config file is: the default path the commands read, once."""

from __future__ import annotations

from pathlib import Path

# The file the commands read when no --config is given and it exists (see `config_path`).
DEFAULT_CONFIG_PATH = Path("conf/gateway.yaml")


def config_path(given: str | Path | None) -> Path | None:
    """The config file a command reads: `given`, else DEFAULT_CONFIG_PATH when it exists, else
    None (the built-in defaults)."""
    if given is not None:
        return Path(given)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None
