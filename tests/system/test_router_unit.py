"""The learned router's parts: features, model, calibration, online learning and persistence."""

from __future__ import annotations

import subprocess
import sys

from gateway.router.features import (
    HASH_SIZE,
    stable_hash,
)


def test_hashing_is_stable_across_processes() -> None:
    code = "from gateway.router.features import stable_hash; print(stable_hash('a:hello world'))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outputs == {str(stable_hash("a:hello world"))}
    assert 0 <= stable_hash("a:hello world") < HASH_SIZE
