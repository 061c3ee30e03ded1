"""Logging: a rotating file (`logs/api_server.log` by default) plus stderr, secrets redacted.

No code path logs a key on purpose; the redacting filter is the second line of defence, replacing
any configured secret that still reaches a log record with `[REDACTED]`.

The request path only puts records on a queue; a listener thread formats and writes them, so a
slow disk or terminal never stalls the event loop. Redaction runs once per record, on the
rendered text (message and traceback), as the record is queued.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
from collections.abc import Iterable
from pathlib import Path

from gateway.config import MIN_REDACTED_SECRET, StorageConfig

REDACTED = "[REDACTED]"
_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_OWN_HANDLER = "_glm_gateway_handler"


class RedactSecrets:
    """Replaces every configured secret in a text, as gateway.config.redact does for data (a
    log line is a plain string, so this keeps the sorted secrets instead of sorting per line)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        kept = {s for s in secrets if len(s) >= MIN_REDACTED_SECRET}
        self.secrets = tuple(sorted(kept, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


class _QueueHandler(logging.handlers.QueueHandler):
    """Queues records for its listener; `flush` waits until they are written, `close` stops the
    listener (after writing what is queued) and closes its handlers."""

    def __init__(self, handlers: list[logging.Handler], redact: RedactSecrets) -> None:
        self._records: queue.Queue[logging.LogRecord] = queue.Queue()
        super().__init__(self._records)
        self.redact = redact
        self.listener = logging.handlers.QueueListener(self._records, *handlers)
        self.listener.start()
        self._listening = True

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """The record with its message and any traceback rendered into `msg`, then redacted:
        an exception's text can carry a secret too."""
        prepared: logging.LogRecord = super().prepare(record)
        if self.redact.secrets:
            prepared.msg = self.redact.redact(str(prepared.msg))
        return prepared

    def flush(self) -> None:
        if self._listening:
            self._records.join()
        for handler in self.listener.handlers:
            handler.flush()

    def close(self) -> None:
        if self._listening:
            self._listening = False
            self.listener.stop()
        for handler in self.listener.handlers:
            handler.close()
        super().close()


def remove_logging() -> None:
    """Remove and close the handlers `setup_logging` installed on the root logger, if any."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _OWN_HANDLER, False):
            root.removeHandler(handler)
            handler.close()


def setup_logging(
    storage: StorageConfig, secrets: Iterable[str], *, to_stderr: bool = True
) -> Path:
    """Install the gateway's handlers on the root logger (idempotent); return the log file path."""
    remove_logging()
    root = logging.getLogger()
    path = Path(storage.log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    redact = RedactSecrets(secrets)
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(
            path, maxBytes=storage.log_max_bytes, backupCount=storage.log_backups, encoding="utf-8"
        )
    ]
    if to_stderr:
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler.setFormatter(logging.Formatter(_FORMAT))
    queued = _QueueHandler(handlers, redact)
    setattr(queued, _OWN_HANDLER, True)
    root.addHandler(queued)
    root.setLevel(storage.log_level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return path
