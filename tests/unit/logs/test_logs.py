"""Logging through the queue: secrets are redacted once per record, and records reach the file."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support import gateway_log

from gateway import logs as logs_module
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


def _flush() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


def _write_lines(
    storage: StorageConfig, lines: int = 60, width: int = 40, level: int = logging.WARNING
) -> Path:
    """Log `lines` numbered lines of about `width` + 50 bytes through the gateway's handlers
    (at WARNING each is written at once; at INFO they are written together, by the flush)."""
    path = setup_logging(dataclasses.replace(storage, log_level="INFO"), [], to_stderr=False)
    try:
        for i in range(lines):
            logging.getLogger("gateway.test").log(level, "line %02d %s", i, "x" * width)
        _flush()
    finally:
        remove_logging()
    return path


@pytest.mark.parametrize("level", [logging.WARNING, logging.INFO], ids=["one by one", "gathered"])
def test_the_file_rolls_over_before_a_line_would_pass_log_max_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, level: int
) -> None:
    monkeypatch.setattr(logs_module, "GATHER_S", 3600.0)  # gathered: all in one batch
    storage = dataclasses.replace(_storage(tmp_path), log_max_bytes=1024, log_backups=2)
    path = _write_lines(storage, level=level)
    files = sorted(tmp_path.glob("gw.log*"))
    assert [f.name for f in files] == ["gw.log", "gw.log.1", "gw.log.2"]
    assert all(f.stat().st_size < 1024 for f in files)
    assert "line 59" in path.read_text()  # the newest line is in the live file
    assert "line 00" not in "".join(f.read_text() for f in files)  # beyond two backups: gone


def test_a_log_path_that_is_not_a_regular_file_never_rolls_over(tmp_path: Path) -> None:
    # A link to /dev/null: were it rolled over, the link (not the device) would be renamed.
    link = tmp_path / "null.log"
    link.symlink_to(os.devnull)
    # /dev/null's size is 0: lines longer than log_max_bytes would each roll a regular file.
    storage = dataclasses.replace(StorageConfig(), log_path=str(link), log_max_bytes=1024)
    _write_lines(storage, lines=3, width=2000)
    assert [p.name for p in tmp_path.iterdir()] == ["null.log"] and link.is_symlink()


def test_a_record_is_formatted_once_for_the_file_and_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    times: list[float] = []
    original = logging.Formatter.formatTime

    def counting(
        self: logging.Formatter, record: logging.LogRecord, datefmt: str | None = None
    ) -> str:
        times.append(record.created)
        return original(self, record, datefmt)

    monkeypatch.setattr(logging.Formatter, "formatTime", counting)
    path = setup_logging(_storage(tmp_path), [], to_stderr=True)
    try:
        logging.getLogger("gateway.test").warning("one line %d", 7)
        _flush()
    finally:
        remove_logging()
    assert len(times) == 1
    line = path.read_text().strip()
    assert line.endswith("WARNING gateway.test one line 7")
    assert line in capsys.readouterr().err


def test_queuing_leaves_the_record_other_handlers_see_unchanged(tmp_path: Path) -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    setup_logging(_storage(tmp_path), [SECRET], to_stderr=False)
    keep = Keep()
    logging.getLogger().addHandler(keep)
    try:
        logging.getLogger("gateway.test").warning("key %s", SECRET)
        _flush()
    finally:
        logging.getLogger().removeHandler(keep)
        remove_logging()
    (record,) = seen
    assert record.msg == "key %s" and record.args == (SECRET,)


def test_an_empty_file_is_never_rolled_over(tmp_path: Path) -> None:
    """A line longer than log_max_bytes written to an empty live file (a fresh start): rolling
    that file over would only shift an empty backup in and drop the oldest real one (the rule
    of gh-116263, which newer standard libraries follow; 3.11, this venv, does not)."""
    storage = dataclasses.replace(_storage(tmp_path), log_max_bytes=1024, log_backups=2)
    for n in (1, 2):
        (tmp_path / f"gw.log.{n}").write_text(f"backup {n}\n")
    path = _write_lines(storage, lines=1, width=2000)
    assert "line 00" in path.read_text()
    assert (tmp_path / "gw.log.1").read_text() == "backup 1\n"
    assert (tmp_path / "gw.log.2").read_text() == "backup 2\n"


def test_a_record_that_cannot_be_formatted_reports_no_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad format (a %d given a string) fails in the queue handler's `prepare`, before any
    redaction; the standard library's handleError then prints the record's message and
    arguments to stderr, the secret among them."""
    setup_logging(_storage(tmp_path), [SECRET], to_stderr=True)
    (queued,) = (h for h in logging.getLogger().handlers if hasattr(h, "redact"))
    record = logging.LogRecord(
        "gateway.test", logging.WARNING, __file__, 1, "key %d", (SECRET,), None
    )
    try:
        queued.handle(record)  # straight to it: pytest's own handlers raise on a bad format
        _flush()
    finally:
        remove_logging()
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "key %d" in err  # reported, still
    assert SECRET not in err


def _wait_for(path: Path, text: str) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return True
        time.sleep(0.01)
    return False


def test_info_lines_are_gathered_and_a_warning_is_written_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_module, "GATHER_S", 3600.0)  # only a warning or a flush writes now
    path = setup_logging(dataclasses.replace(_storage(tmp_path), log_level="INFO"), [])
    batches: list[list[int]] = []
    try:
        (queued,) = [
            h for h in logging.getLogger().handlers if isinstance(h, logs_module._QueueHandler)
        ]
        handler = queued.listener.handlers[0]
        real = handler.write_batch  # type: ignore[attr-defined]

        def spy(records: list[logging.LogRecord]) -> None:
            batches.append([r.levelno for r in records])
            real(records)

        monkeypatch.setattr(handler, "write_batch", spy)
        log = logging.getLogger("gateway.test")
        for i in range(3):
            log.info("request %d", i)
        time.sleep(0.05)  # the listener took the first and waits for company
        assert batches == [], "no line written yet: gathered"
        log.warning("upstream refused")
        assert _wait_for(path, "upstream refused"), "a warning is written at once"
        assert batches == [[logging.INFO] * 3 + [logging.WARNING]], "with those before, at once"
        log.info("after")
        _flush()  # waits for it, at once
        assert "request 2" in path.read_text() and "after" in path.read_text()
        log.info("at shutdown")
    finally:
        remove_logging()  # writes what is gathered, without waiting out GATHER_S
    assert "at shutdown" in path.read_text()


def _queued() -> logs_module._QueueHandler:
    (queued,) = [
        h for h in logging.getLogger().handlers if isinstance(h, logs_module._QueueHandler)
    ]
    return queued


def test_a_record_queued_after_the_stop_sentinel_neither_hangs_nor_reaches_a_handler_as_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """remove_logging closes the handler without its lock, so a thread already inside `emit`
    queues its record after `stop()` queued the sentinel, before the listener drains the queue
    (with two threads logging, about every other remove_logging hung forever)."""
    monkeypatch.setattr(logs_module, "GATHER_S", 3600.0)
    path = setup_logging(dataclasses.replace(_storage(tmp_path), log_level="INFO"), [])
    queued = _queued()
    listener = queued.listener
    thread = listener._thread
    assert thread is not None
    try:
        log = logging.getLogger("gateway.test")
        log.info("before the stop")  # the listener takes it and gathers
        queued._records.put_nowait(None)  # type: ignore[arg-type]  # as stop() does
        log.info("after the stop")  # another thread, still logging
        listener.urgent.set()  # as stop() does
        thread.join(timeout=10)
        assert not thread.is_alive(), "the listener saw its sentinel and stopped"
    finally:
        remove_logging()
    text = path.read_text()
    assert "before the stop" in text and "after the stop" in text
    assert "Logging error" not in capsys.readouterr().err


def test_a_line_the_file_cannot_encode_loses_only_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lone surrogate (valid in JSON, "\\ud800") cannot be written as UTF-8: as when records
    were written one by one, that line is reported and the lines gathered with it are kept."""
    monkeypatch.setattr(logs_module, "GATHER_S", 3600.0)
    path = setup_logging(
        dataclasses.replace(_storage(tmp_path), log_level="INFO"), [], to_stderr=False
    )
    try:
        log = logging.getLogger("gateway.test")
        log.info("before")
        log.info("model %s", "bad\ud800")
        log.info("after")
        _flush()
    finally:
        remove_logging()
    text = path.read_text()
    assert "before" in text and "after" in text and "model bad" not in text
    assert "--- Logging error ---" in capsys.readouterr().err


def test_gathered_non_ascii_lines_roll_over_as_lines_written_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The size of a gathered batch is counted in bytes, as `fstat` counts it after each line
    written alone: text in another script (two or three bytes a character) rolls the same."""
    monkeypatch.setattr(logs_module, "GATHER_S", 3600.0)
    sizes = []
    for one_by_one in (True, False):
        folder = tmp_path / str(one_by_one)
        folder.mkdir()
        storage = dataclasses.replace(_storage(folder), log_max_bytes=1024, log_backups=9)
        path = setup_logging(dataclasses.replace(storage, log_level="INFO"), [], to_stderr=False)
        try:
            for i in range(40):
                logging.getLogger("gateway.test").info("line %02d %s", i, "é" * 40)
                if one_by_one:
                    _flush()
            _flush()
        finally:
            remove_logging()
        sizes.append(sorted((f.name, f.stat().st_size) for f in folder.glob("gw.log*")))
        assert path.exists()
    assert sizes[1] == sizes[0]


def _returns(action: Callable[[], object], listener: logs_module._GatheringListener) -> bool:
    """Whether `action`, run in another thread, returns within 10 s (a held one is then let go
    through `urgent`, to end cleanly)."""
    thread = threading.Thread(target=action, daemon=True)
    thread.start()
    thread.join(timeout=10)
    returned = not thread.is_alive()
    listener.urgent.set()
    thread.join(timeout=10)
    return returned


def _before_each_write(
    monkeypatch: pytest.MonkeyPatch,
    listener: logs_module._GatheringListener,
    hook: Callable[[list[logging.LogRecord]], None],
) -> None:
    """Call `hook` with each batch the listener hands the file, in the listener's thread after
    it took the batch, before the batch is written."""
    handler = listener.handlers[0]
    real = handler.write_batch  # type: ignore[attr-defined]

    def hooked(records: list[logging.LogRecord]) -> None:
        hook(records)
        real(records)

    monkeypatch.setattr(handler, "write_batch", hooked)


def test_a_flush_is_not_held_by_a_record_another_thread_queues_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush makes the listener write at once for as long as it waits, not only for the
    first batch: a record queued by another thread after that batch was taken is written at
    once too, instead of being gathered for GATHER_S (or, at a steady rate, the flush waiting
    on batch after batch)."""
    monkeypatch.setattr(logs_module, "GATHER_S", 3600.0)
    path = setup_logging(
        dataclasses.replace(_storage(tmp_path), log_level="INFO"), [], to_stderr=False
    )
    queued = _queued()
    log = logging.getLogger("gateway.test")

    def meanwhile(records: list[logging.LogRecord]) -> None:
        if not any("meanwhile" in str(r.msg) for r in records):
            log.info("meanwhile")  # from another thread (the listener's), after the drain

    _before_each_write(monkeypatch, queued.listener, meanwhile)
    try:
        log.info("first")
        assert _returns(queued.flush, queued.listener), "the flush returned"
    finally:
        remove_logging()
    assert "meanwhile" in path.read_text()


def test_stopping_is_not_held_by_a_record_queued_just_before_the_sentinel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stop() makes the listener write at once until it has stopped: a record another thread
    queues after the listener took its batch but before the sentinel is not gathered for
    GATHER_S, with the sentinel waiting behind it."""
    monkeypatch.setattr(logs_module, "GATHER_S", 3600.0)
    path = setup_logging(
        dataclasses.replace(_storage(tmp_path), log_level="INFO"), [], to_stderr=False
    )
    queued = _queued()
    listener = queued.listener
    drained = threading.Event()

    def late_then_sentinel() -> None:
        drained.wait(10)
        late = "just before the sentinel"  # from a thread in the handler before its removal
        queued.handle(
            logging.LogRecord("gateway.test", logging.INFO, __file__, 1, late, None, None)
        )
        listener.queue.put_nowait(None)

    _before_each_write(monkeypatch, listener, lambda records: drained.set())
    monkeypatch.setattr(listener, "enqueue_sentinel", late_then_sentinel)
    logging.getLogger("gateway.test").info("gathered")
    assert _returns(remove_logging, listener), "the listener stopped"
    assert "just before the sentinel" in path.read_text()


def test_a_rollover_that_cannot_open_the_new_file_loses_only_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Opening the new file fails once (say, out of file descriptors for a moment): the line
    that rolled the file over is reported and lost, as when lines were written one by one,
    and the lines gathered after it go to the file opened next."""
    monkeypatch.setattr(logs_module, "GATHER_S", 3600.0)
    storage = dataclasses.replace(_storage(tmp_path), log_max_bytes=1024, log_backups=9)
    setup_logging(dataclasses.replace(storage, log_level="INFO"), [], to_stderr=False)
    handler = _queued().listener.handlers[0]
    real_open = handler._open  # type: ignore[attr-defined]
    opened: list[int] = []

    def once_failing() -> object:
        opened.append(1)
        if len(opened) == 1:
            raise OSError(24, "Too many open files")
        return real_open()

    monkeypatch.setattr(handler, "_open", once_failing)
    try:
        for i in range(20):
            logging.getLogger("gateway.test").info("line %02d %s", i, "x" * 40)
        _flush()
    finally:
        remove_logging()
    text = "".join(f.read_text() for f in tmp_path.glob("gw.log*"))
    kept = [i for i in range(20) if f"line {i:02d} " in text]
    assert len(opened) > 1 and len(kept) == 19
    assert "--- Logging error ---" in capsys.readouterr().err


def test_a_line_a_strict_stderr_cannot_encode_loses_only_itself() -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")
    handler = logs_module._Stderr(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    records = [
        logging.LogRecord("gateway.test", logging.INFO, __file__, 1, text, None, None)
        for text in ("before", "bad \ud800 surrogate", "after")
    ]
    handler.write_batch(records)
    stream.flush()
    assert raw.getvalue().decode() == "before\nafter\n"


def test_a_handler_that_raises_neither_ends_the_listener_nor_holds_a_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug in a handler's batch write (one `handleError` does not catch, a RecursionError)
    loses that batch, said on stderr; the listener goes on, so later records are written and
    flush() and stop() return instead of waiting for ever on a dead thread."""
    path = setup_logging(
        dataclasses.replace(_storage(tmp_path), log_level="INFO"), [], to_stderr=False
    )
    queued = _queued()
    log = logging.getLogger("gateway.test")

    def broken_once(records: list[logging.LogRecord]) -> None:
        if any("broken" in str(r.msg) for r in records):
            raise RuntimeError("a handler bug")

    _before_each_write(monkeypatch, queued.listener, broken_once)
    try:
        log.warning("broken")  # written at once: alone in its batch
        assert _returns(queued.flush, queued.listener), "the flush after the failure returned"
        log.warning("after")
        assert _returns(queued.flush, queued.listener), "the next flush returned"
        assert queued.listener._thread is not None and queued.listener._thread.is_alive()
    finally:
        assert _returns(remove_logging, queued.listener), "the listener stopped"
    text = path.read_text()
    assert "after" in text and "broken" not in text
    assert "RuntimeError: a handler bug" in capsys.readouterr().err
