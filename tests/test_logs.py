"""Logging through the queue: secrets are redacted once per record, and records reach the file."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from gateway.config import StorageConfig
from gateway.logs import REDACTED, RedactSecrets, setup_logging

SECRET = "sk-secret-for-logs-1234"


def test_redaction_runs_once_per_record_and_reaches_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = RedactSecrets.filter

    def counting(self: RedactSecrets, record: logging.LogRecord) -> bool:
        calls.append(record.getMessage())
        return original(self, record)

    monkeypatch.setattr(RedactSecrets, "filter", counting)
    storage = dataclasses.replace(StorageConfig(), log_path=str(tmp_path / "gw.log"))
    path = setup_logging(storage, [SECRET], to_stderr=True)
    root = logging.getLogger()
    try:
        logging.getLogger("gateway.test").warning("key %s", SECRET)
        for handler in root.handlers:
            handler.flush()
        text = path.read_text()
    finally:
        for handler in list(root.handlers):
            if getattr(handler, "_glm_gateway_handler", False):
                root.removeHandler(handler)
                handler.close()
    assert len(calls) == 1  # a file and a stderr handler, one redaction
    assert SECRET not in text and f"key {REDACTED}" in text
