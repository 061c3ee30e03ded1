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
    original = RedactSecrets.redact

    def counting(self: RedactSecrets, text: str) -> str:
        calls.append(text)
        return original(self, text)

    monkeypatch.setattr(RedactSecrets, "redact", counting)
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


def test_a_secret_in_a_traceback_is_redacted(tmp_path: Path) -> None:
    storage = dataclasses.replace(StorageConfig(), log_path=str(tmp_path / "gw.log"))
    path = setup_logging(storage, [SECRET], to_stderr=False)
    root = logging.getLogger()
    try:
        try:
            raise RuntimeError(f"upstream said: bad key {SECRET}")
        except RuntimeError:
            logging.getLogger("gateway.test").exception("call failed")
        for handler in root.handlers:
            handler.flush()
        text = path.read_text()
    finally:
        for handler in list(root.handlers):
            if getattr(handler, "_glm_gateway_handler", False):
                root.removeHandler(handler)
                handler.close()
    assert "call failed" in text and "RuntimeError: upstream said: bad key" in text
    assert SECRET not in text and REDACTED in text
