"""Logging: a rotating file (`logs/api_server.log` by default) plus stderr, secrets redacted.

No code path logs a key on purpose; the redacting filter is the second line of defence, replacing
any configured secret that still reaches a log record with `[REDACTED]`.

The request path only puts records on a queue; a listener thread formats and writes them, so a
slow disk or terminal never stalls the event loop. Redaction runs once per record, on the
rendered text (message and traceback), as the record is queued. The listener gathers records for
GATHER_S after the first before writing them, so that it is woken about once per period rather
than once per request; a record at WARNING or above, a flush and shutdown have it write at once.
A process killed outright (`kill -9`) may therefore lose its last GATHER_S of INFO lines, never
a warning or an error that was written out before it.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import queue
import stat
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path

from gateway.config import MIN_REDACTED_SECRET, StorageConfig

REDACTED = "[REDACTED]"

GATHER_S = 0.05
"""How long the listener gathers records after the first before writing them (module docstring):
waking a thread for each request's log line cost about 7 % of a request's CPU at INFO."""

WRITE_SLICE = 32
"""Records formatted between two writes: the listener holds the GIL while it formats, and the
event loop waits for it meanwhile, so a long batch goes out in slices (about 0.3 ms each)."""
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


def _lines(
    handler: logging.Handler, records: list[logging.LogRecord], encoding: str | None = None
) -> list[tuple[logging.LogRecord, str]]:
    """The records that pass `handler`'s filters, with their lines; a record that cannot be
    formatted, or encoded in `encoding` if given, is reported (`handleError`) and left out:
    in the batch's one write it would take the lines gathered with it along."""
    lines = []
    for record in records:
        if not handler.filter(record):
            continue
        try:
            line = handler.format(record) + "\n"
            if encoding is not None and not line.isascii():
                line.encode(encoding)  # a lone surrogate (valid in JSON) is not UTF-8
            lines.append((record, line))
        except RecursionError:
            raise
        except Exception:
            handler.handleError(record)
    return lines


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, with `write_batch`: the records gathered by the listener in one write."""

    def write_batch(self, records: list[logging.LogRecord]) -> None:
        # A stream that refuses what it cannot encode (stderr is lenient unless told to be
        # strict) would fail the batch's one write for a single line: such a line goes alone.
        strict = getattr(self.stream, "errors", None) == "strict"
        encoding = getattr(self.stream, "encoding", None) if strict else None
        lines = _lines(self, records, encoding)
        if not lines:
            return
        with self.lock or contextlib.nullcontext():
            try:
                self.stream.write("".join([line for _, line in lines]))
                self.flush()
            except RecursionError:
                raise
            except Exception:
                self.handleError(lines[0][0])


class _RotatingFile(logging.handlers.RotatingFileHandler):
    """The standard library's rotating file, with its size checked by one `fstat` per record
    (per batch in `write_batch`): its own check costs two `stat` calls, two seeks and a second
    formatting of every record. The same rule: the file rolls over before the line that would
    take it to `maxBytes`, and a file that is not a regular file (/dev/null, a pipe) never rolls
    over (bpo-45401), nor does an empty one (gh-116263: a line longer than `maxBytes` on a fresh
    file). Workers that share the file see each other's lines in the size, as before."""

    def write_batch(self, records: list[logging.LogRecord]) -> None:
        """Write the records gathered by the listener with one write, or one per file when the
        batch rolls the file over (the rule above, line by line)."""
        encoding = self.encoding or "utf-8"
        lines = _lines(self, records, encoding if self.errors in (None, "strict") else None)
        if not lines:
            return
        with self.lock or contextlib.nullcontext():
            at = 0  # the line in hand: those before it are written, or in the failed last write
            try:
                if self.stream is None:
                    self.stream = self._open()
                size, regular = self._size()
                pending: list[str] = []
                for at, (_, line) in enumerate(lines):  # noqa: B007 (read on a failure)
                    if size and regular and size + len(line) >= self.maxBytes > 0:
                        self.stream.write("".join(pending))
                        pending = []
                        self.doRollover()
                        if self.stream is None:
                            self.stream = self._open()
                        size, regular = self._size()
                    pending.append(line)
                    # fstat counts bytes: what it would say after this line written alone
                    size += len(line) if line.isascii() else len(line.encode(encoding, "replace"))
                self.stream.write("".join(pending))
                self.stream.flush()
            except RecursionError:
                raise
            except Exception:
                # As when written one by one: that line is lost (a rollover failed, say, to open
                # the new file), and each after it is tried alone.
                self.handleError(lines[at][0])
                for record, _ in lines[at + 1 :]:
                    self.emit(record)

    def _size(self) -> tuple[int, bool]:
        """The open file's size, and whether it is a regular file (0, False: never rolled)."""
        if self.maxBytes <= 0:
            return 0, False
        assert self.stream is not None
        status = os.fstat(self.stream.fileno())
        return status.st_size, stat.S_ISREG(status.st_mode)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            if self.stream is None:
                self.stream = self._open()
            size, regular = self._size()  # an empty file is never rolled over (gh-116263)
            if size and regular and size + len(line) >= self.maxBytes:
                self.doRollover()
                if self.stream is None:
                    self.stream = self._open()
            self.stream.write(line)
            self.stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


class _FormatOnce(logging.Formatter):
    """Formats a record once for every handler that shares it (the file and stderr)."""

    def format(self, record: logging.LogRecord) -> str:
        line: str | None = record.__dict__.get("_formatted")
        if line is None:
            line = super().format(record)
            record._formatted = line
        return line


def _copy(record: logging.LogRecord) -> logging.LogRecord:
    """A shallow copy of `record`, as `copy.copy` makes, without its generic and slower path."""
    copied: logging.LogRecord = logging.LogRecord.__new__(logging.LogRecord)
    copied.__dict__.update(record.__dict__)
    return copied


_STOP = None  # what QueueListener.stop() queues (its `_sentinel`); never a record


class _GatheringListener(logging.handlers.QueueListener):
    """A listener that writes the records queued within GATHER_S of the first together, unless
    `urgent` is set (a record at WARNING or above, a flush, stopping)."""

    def __init__(self, records: queue.Queue[logging.LogRecord], *handlers: logging.Handler) -> None:
        super().__init__(records, *handlers)
        self.urgent = threading.Event()
        self._waiting = 0  # flushes and stop() waiting on the listener: no gathering meanwhile
        self._waiting_lock = threading.Lock()

    def _monitor(self) -> None:
        records = self.queue
        assert isinstance(records, queue.Queue)
        stopping = False
        while not stopping:
            batch = [records.get()]
            if batch[0] is not _STOP and not self._waiting:
                # While it waits here, puts find no thread waiting on the queue: none wakes it.
                self.urgent.wait(GATHER_S)
            self.urgent.clear()  # a record made urgent since is among those taken next
            while True:
                try:
                    batch.append(records.get_nowait())
                except queue.Empty:
                    break
            # stop() queues the sentinel, but a thread inside `emit` as remove_logging closes
            # the handler queues its record after it: what was taken with it is written too.
            written = [record for record in batch if record is not _STOP]
            stopping = len(written) < len(batch)
            try:
                for start in range(0, len(written), WRITE_SLICE):
                    self._write(written[start : start + WRITE_SLICE])
            except Exception:  # a handler's bug must not end the listener
                # Dead, it would leave every later record unwritten and flush() and stop()
                # waiting for ever; its batch is lost, said on stderr as logging's own errors.
                traceback.print_exc(file=sys.stderr)
            finally:
                for _ in batch:
                    records.task_done()

    @contextlib.contextmanager
    def _hurried(self) -> Iterator[None]:
        """The listener writes at once while in this: also what other threads queue meanwhile
        (`queue.join` waits for that too; stop()'s sentinel may be queued behind it)."""
        with self._waiting_lock:
            self._waiting += 1
        try:
            self.urgent.set()
            yield
        finally:
            with self._waiting_lock:
                self._waiting -= 1

    def flush(self) -> None:
        """Wait until every record queued so far is written."""
        with self._hurried():
            self.queue.join()  # type: ignore[attr-defined]

    def _write(self, records: list[logging.LogRecord]) -> None:
        """Hand every record to every handler (as `handle` does), in one batch to those that
        take one: a write each instead of one per record, and one hand-over of the GIL."""
        if not records:
            return
        for handler in self.handlers:
            write_batch = getattr(handler, "write_batch", None)
            if write_batch is not None:
                write_batch(records)
            else:
                for record in records:
                    handler.handle(record)

    def stop(self) -> None:
        with self._hurried():
            super().stop()


class _QueueHandler(logging.handlers.QueueHandler):
    """Queues records for its listener; `flush` waits until they are written, `close` stops the
    listener (after writing what is queued) and closes its handlers."""

    def __init__(self, handlers: list[logging.Handler], redact: RedactSecrets) -> None:
        self._records: queue.Queue[logging.LogRecord] = queue.Queue()
        super().__init__(self._records)
        self.redact = redact
        self.listener = _GatheringListener(self._records, *handlers)
        self.listener.start()
        self._listening = True

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """The record with its message and any traceback rendered into `msg`, then redacted:
        an exception's text can carry a secret too."""
        text = self.format(record)
        if self.redact.secrets:
            text = self.redact.redact(text)
        prepared = _copy(record)  # other handlers may hold the record, as stdlib's prepare says
        prepared.msg = prepared.message = text
        prepared.args = None
        prepared.exc_info = prepared.exc_text = prepared.stack_info = None
        return prepared

    def enqueue(self, record: logging.LogRecord) -> None:
        self._records.put_nowait(record)
        if record.levelno >= logging.WARNING:
            self.listener.urgent.set()

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        """As the standard library's (a traceback to stderr), but the message and arguments it
        prints with it are redacted: `prepare` failed before its redaction ran."""
        if self.redact.secrets:
            shown = _copy(record)
            shown.msg = self.redact.redact(str(record.msg))
            shown.args = self.redact.redact(repr(record.args))  # type: ignore[assignment]
            record = shown
        super().handleError(record)

    def flush(self) -> None:
        if self._listening:
            self.listener.flush()
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
        _RotatingFile(
            path, maxBytes=storage.log_max_bytes, backupCount=storage.log_backups, encoding="utf-8"
        )
    ]
    if to_stderr:
        handlers.append(_Stderr())
    formatter = _FormatOnce(_FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
    queued = _QueueHandler(handlers, redact)
    setattr(queued, _OWN_HANDLER, True)
    root.addHandler(queued)
    root.setLevel(storage.log_level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return path
