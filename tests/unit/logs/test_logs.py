"""Logging through the queue: secrets are redacted once per record, and records reach the file."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
from support import gateway_log

from gateway.config import StorageConfig
from gateway.logs import REDACTED, RedactSecrets, remove_logging, setup_logging

SECRET = "sk-secret-for-logs-1234"


def _storage(tmp_path: Path) -> StorageConfig:
    return dataclasses.replace(StorageConfig(), log_path=str(tmp_path / "gw.log"))


def test_redaction_runs_once_per_record_and_reaches_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    original = RedactSecrets.redact

    def counting(self: RedactSecrets, text: str) -> str:
        calls.append(text)
        return original(self, text)

    monkeypatch.setattr(RedactSecrets, "redact", counting)
    path = setup_logging(_storage(tmp_path), [SECRET], to_stderr=True)
    try:
        logging.getLogger("gateway.test").warning("key %s", SECRET)
        for handler in logging.getLogger().handlers:
            handler.flush()
        text = path.read_text()
    finally:
        remove_logging()
    assert len(calls) == 1  # a file and a stderr handler, one redaction
    assert SECRET not in text and f"key {REDACTED}" in text


def test_a_secret_in_a_traceback_is_redacted(tmp_path: Path) -> None:
    with gateway_log(_storage(tmp_path), [SECRET]) as read:
        try:
            raise RuntimeError(f"upstream said: bad key {SECRET}")
        except RuntimeError:
            logging.getLogger("gateway.test").exception("call failed")
        text = read()
    assert "call failed" in text and "RuntimeError: upstream said: bad key" in text
    assert SECRET not in text and REDACTED in text
