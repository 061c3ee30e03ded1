"""The gateway as a real process: kill -9 loses nothing completed; SIGTERM drains; --demo."""

from __future__ import annotations

import pytest

from gateway.cli import exposure_warning


@pytest.mark.parametrize(
    ("host", "keys", "warns"),
    [
        ("127.0.0.1", False, False),
        ("localhost", False, False),
        ("::1", False, False),
        ("0.0.0.0", False, True),
        ("192.168.1.10", False, True),
        ("0.0.0.0", True, False),
    ],
)
def test_exposure_warning(host: str, keys: bool, warns: bool) -> None:
    warning = exposure_warning(host, keys)
    assert (warning is not None) == warns
    if warning:
        assert "API keys" in warning and host in warning
