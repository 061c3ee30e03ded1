"""The llama.cpp setup check: it proves a built llama-server generates tokens, names the signal
of one that crashes, and the integration tests skip (never error) when llama.cpp cannot run.

The broken servers here are small scripts, so these tests run everywhere; the two marked
`llamacpp` run the real build.
"""

from __future__ import annotations

from gateway.dev.llama_server import (
    describe_exit,
)


def test_describe_exit_names_the_signal() -> None:
    assert describe_exit(1) == "exited with status 1"
    text = describe_exit(-4)
    assert "SIGILL (signal 4)" in text and "illegal CPU instruction" in text
    assert describe_exit(-9) == "was killed by SIGKILL (signal 9)"
