"""Memory that stops growing (issue 23): every structure that grows with conversations, requests
or time has a bound in the config, keeps it, reports it in /stats and /metrics, and evicts
without breaking behaviour; learning.db and router.db keep their row limits."""

from __future__ import annotations

import hashlib
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from paths import REPO_ROOT

from gateway.bounded import SLOT_BYTES, BoundedLRU
from gateway.config import ConfigError, EscalationConfig, LearnConfig, load_config, parse_config
from gateway.router.conversation import CACHE, FingerprintCache, fingerprint
from gateway.router.escalation import ConversationTracker
from gateway.router.labels import LabelBook, LearningStore, TurnRow
from gateway.router.packed import pack, unpack
from gateway.router.router import Router
from gateway.router.store import RouterStore
from gateway.storage.connection import connect
from gateway.storage.retention import Retention, TableLimit
from gateway.storage.writer import Write
from gateway.wire.chunk import read_chunk
from gateway.wire.sinks import StreamSink


def test_lru_keeps_its_count_bound_and_forgets_the_least_recent() -> None:
    evicted: list[str] = []
    lru: BoundedLRU[str, int] = BoundedLRU(3, on_evict=lambda k, v: evicted.append(k))
    for i, key in enumerate("abc"):
        lru.put(key, i)
    assert lru.get("a") == 0  # now the most recent
    lru.put("d", 3)
    assert list(lru) == ["c", "a", "d"] and evicted == ["b"]
    assert lru.usage() == {
        "size": 3,
        "bound": 3,
        "bytes": 3 * SLOT_BYTES,
        "bytes_bound": None,
        "evicted": 1,
    }
    assert lru.pop("a") == 0 and lru.pop("a") is None
    assert lru.bytes == 2 * SLOT_BYTES and lru.evicted == 1, "a pop is no eviction"


def test_lru_keeps_its_byte_bound_with_entries_of_any_size() -> None:
    lru: BoundedLRU[str, str] = BoundedLRU(
        1000, max_bytes=2000, sizeof=lambda k, v: sys.getsizeof(v)
    )
    for i in range(50):
        lru.put(f"k{i}", "x" * (i * 10))
        assert lru.bytes <= 2000 or len(lru) == 1
    assert lru.bytes == sum(SLOT_BYTES + sys.getsizeof(v) for v in lru.values())
    assert list(lru)[-1] == "k49" and len(lru) < 10
    assert not lru.fits(2000) and lru.fits(100)


def test_lru_counts_values_changed_in_place_when_told_they_are_mutable() -> None:
    lru: BoundedLRU[str, list[int]] = BoundedLRU(10, sizeof=lambda k, v: 8 * len(v), mutable=True)
    value = [1]
    lru.put("a", value)
    value.extend(range(9))
    lru.put("a", value)  # changed in place, put again
    assert lru.bytes == SLOT_BYTES + 80
    value.clear()
    lru.pop("a")
    assert lru.bytes == 0


def test_lru_refuses_a_zero_bound() -> None:
    with pytest.raises(ValueError):
        BoundedLRU(0)


def test_fingerprint_cache_is_keyed_by_digests_and_bounded() -> None:
    cache = FingerprintCache(4)
    prompts = [f"You work in /home/dev/repo-{i}. " + "rules " * 2000 for i in range(10)]
    for prompt in prompts:
        state = cache.state(prompt).copy()
        state.update(b"ask\x00")
        expected = hashlib.sha256((prompt + "\x00ask\x00").encode()).hexdigest()
        assert state.hexdigest() == expected
    assert len(cache.entries) == 4 and cache.entries.evicted == 6
    assert all(
        isinstance(k, tuple) and not any(isinstance(p, str) for p in k) for k in cache.entries
    ), "no prompt text is kept"
    usage = cache.entries.usage()
    assert usage["bytes"] < 4 * 1024, "a few hundred bytes an entry, not the 12 KB prompts"


def test_fingerprints_stay_the_same_after_the_cache_forgot_the_prompt() -> None:
    """learning.db keys stay valid: the formula does not depend on what the cache holds."""
    messages = [{"role": "system", "content": "S é"}, {"role": "user", "content": "say hello"}]
    expected = "fp:" + hashlib.sha256("S é\x00say hello\x00".encode()).hexdigest()[:32]
    assert fingerprint(messages) == expected
    CACHE.entries.clear()
    assert fingerprint(messages) == expected


def tracker(tmp_path: Path, **kw: Any) -> ConversationTracker:
    store = LearningStore(str(tmp_path / "learning.db"))
    cfg = EscalationConfig(**kw)
    loaded = store.load(
        ttl_seconds=cfg.ttl_seconds,
        max_rows=cfg.max_turns,
        max_conversations=cfg.max_conversations,
    )
    labels = LabelBook(store, lambda *a: True, {})
    return ConversationTracker(cfg, LearnConfig(), store, labels, loaded)


def task(n: int) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": f"workspace {n}"},
            {"role": "user", "content": "fix the test"},
        ]
    }


NO_SUCH_TOOL = '{"error":"AI_NoSuchToolError: Model tried to call unavailable tool say_hi"}'


def failed_turn(n: int) -> dict[str, Any]:
    """The follow-up of task(n) whose tool result says the local answer called no such tool."""
    messages = task(n)["messages"] + [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "say_hi", "arguments": "{}"}}
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": NO_SUCH_TOOL,
        },
    ]
    return {"messages": messages}


def test_tracker_keeps_its_bounds_and_an_evicted_conversation_only_loses_its_memory(
    tmp_path: Path,
) -> None:
    t = tracker(tmp_path, max_conversations=5, max_turns=8)
    t.begin("first", task(0))
    t.finish("first", "local")
    assert t.begin("second", failed_turn(0)) is not None, "remembered: escalated"
    t.finish("second", "cerebras")
    for n in range(1, 40):
        t.begin(f"r{n}", task(n))
        t.finish(f"r{n}", "local")
        assert len(t.conversations) <= 5 and len(t.turns) <= 8
    assert t.usage()["conversations"]["evicted"] > 0 and t.usage()["turns"]["evicted"] > 0
    assert t.pending == {}, "no request stays in flight"
    assert t.turns.peek("first") is None, "its answers are forgotten too"
    # Forgotten: the next turn of task 0 is served like any other, with no escalation.
    assert t.begin("third", failed_turn(0)) is None
    t.finish("third", "local")
    assert t.usage()["conversations"]["bytes"] < 5 * 1024
    t.store.close()


def test_tracker_turns_share_their_conversation_key(tmp_path: Path) -> None:
    t = tracker(tmp_path)
    t.begin("a", task(1))
    t.finish("a", "local")
    row = t.conversations.peek(t.turns.peek("a").conversation)  # type: ignore[union-attr]
    assert row is not None and t.turns.peek("a").conversation is row.key  # type: ignore[union-attr]
    t.store.close()


def router_config(**learn: Any) -> Any:
    return parse_config({"routing": {"router": "learned", "learn": learn}}, env={})


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def test_packed_vectors_score_and_learn_exactly_like_dicts() -> None:
    vector = {4100: 0.5, 7: 0.25, 12: -1.0 / 3, 4096: 1.0}
    packed = pack(vector)
    assert unpack(packed) == vector and list(unpack(packed)) == list(vector), "order kept"


def test_router_remembers_at_most_its_count_and_bytes(tmp_path: Path) -> None:
    router = Router(router_config(remember_requests=20), store_path=tmp_path / "router.db")
    for i in range(100):
        router.route(f"r{i}", ask(f"question {i} about the colour of the sky"))
    assert len(router.remembered) == 20
    assert router.score("r99") is not None and router.score("r0") is None
    assert not router.learn("r0", bad=True, source="feedback"), "evicted: nothing to learn"
    assert router.learn("r99", bad=True, source="feedback")
    router.close()

    small = Router(router_config(remember_requests=1000, remember_bytes=64 * 1024), store_path=None)
    long_ask = " ".join(f"word{i}" for i in range(400))  # hundreds of hashed n-grams
    for i in range(40):
        small.route(f"l{i}", ask(f"{i} {long_ask}"))
    usage = small.usage()["router_remembered"]
    assert usage["bytes"] <= 64 * 1024 and 0 < usage["size"] < 40
    small.close()


def test_router_db_keeps_its_row_limits_and_label_counts(tmp_path: Path) -> None:
    path = tmp_path / "router.db"
    router = Router(router_config(remember_requests=30, max_labels=25), store_path=path)
    for i in range(80):
        router.route(f"r{i}", ask(f"question {i}"))
    for i in range(50, 80):
        assert router.learn(f"r{i}", bad=i % 2 == 0, source="feedback")
    router.flush()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM features").fetchone() == (30,)
        ids = [r for (r,) in db.execute("SELECT request_id FROM labels ORDER BY id")]
        assert ids == [f"r{i}" for i in range(55, 80)], "the newest 25 labels"
    assert router.usage()["router_db_labels"]["size"] == 25
    router.close()
    again = Router(router_config(remember_requests=30, max_labels=25), store_path=path)
    assert again.snapshot()["labels"] == {"feedback": 30}, "counts outlive trimmed rows"
    again.close()


def test_router_db_written_before_the_counters_keeps_its_label_counts(tmp_path: Path) -> None:
    path = tmp_path / "router.db"
    store = RouterStore(path, window=10, remember=10)
    store.load("digest")
    store.close()
    with sqlite3.connect(path) as db:  # an older file: labels, no counters for them
        db.executemany(
            "INSERT INTO labels (request_id, source, label, weight, time) VALUES (?, ?, 1, 1, ?)",
            [(f"r{i}", "agent_loop", time.time()) for i in range(7)],
        )
    again = RouterStore(path, window=10, remember=10, max_labels=3)
    assert again.load("digest").labels == {"agent_loop": 7}
    again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM labels").fetchone() == (3,)
    third = RouterStore(path, window=10, remember=10, max_labels=3)
    assert third.load("digest").labels == {"agent_loop": 7}
    third.close()


def test_learning_db_stays_within_its_row_limits_while_running(tmp_path: Path) -> None:
    path = str(tmp_path / "learning.db")
    store = LearningStore(path)
    store.load(ttl_seconds=3600, max_rows=50, max_conversations=20, max_labels=30)
    now = time.time()
    for i in range(200):  # written past every cap, oldest first
        store.put_turn(TurnRow(f"t{i}", f"c{i}", 1, "local", now - 200 + i))
        if i % 10 == 0:
            store.flush()  # several batches, as under load
    labels = LabelBook(store, lambda *a: True, {})
    for i in range(120):
        labels.add(f"t{i}", bad=False, source="agent_loop")
    from gateway.router.labels import ConversationRow

    for i in range(90):
        store.put_conversation(ConversationRow(f"c{i}", None, None, 1, None, None, now - 90 + i))
    store.flush()
    with sqlite3.connect(path) as db:
        turns = [r for (r,) in db.execute("SELECT request_id FROM turns ORDER BY time")]
        assert turns == [f"t{i}" for i in range(150, 200)], "the newest 50 turns"
        keys = [r for (r,) in db.execute("SELECT key FROM conversations ORDER BY updated")]
        assert keys == [f"c{i}" for i in range(70, 90)]
        assert db.execute("SELECT COUNT(*), MIN(request_id) FROM labels").fetchone()[0] == 30
    usage = store.usage()
    assert usage["learning_db_turns"]["size"] == 50 and usage["learning_db_turns"]["bound"] == 50
    assert usage["learning_db_turns"]["deleted"] == 150
    store.close()
    reopened = LearningStore(path)
    loaded = reopened.load(ttl_seconds=3600, max_rows=50, max_conversations=20, max_labels=30)
    assert loaded.label_counts == {"agent_loop": 120}, "counts outlive trimmed rows"
    assert len(loaded.turns) == 50 and len(loaded.conversations) == 20
    reopened.close()


def test_expired_rows_go_by_ttl_while_running(tmp_path: Path) -> None:
    clock = [1_000_000.0]
    conn = connect(str(tmp_path / "t.db"))
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, time REAL NOT NULL)")
    conn.execute("CREATE INDEX t_time ON t (time)")
    insert = "INSERT INTO t (time) VALUES (?)"
    retention = Retention(
        [TableLimit("t", "id", 1000, frozenset({insert}), "time", 100.0)],
        ttl_every=10.0,
        clock=lambda: clock[0],
    )
    for offset in (-500, -150, -50, 0):
        conn.execute(insert, (clock[0] + offset,))
    retention.start(conn)
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (2,)
    clock[0] += 5  # not due yet
    conn.execute(insert, (clock[0],))
    retention.after_batch(conn, [Write(insert, (clock[0],))])
    assert retention.usage()["t"]["size"] == 3
    clock[0] += 60  # the row written 50 s before the start is 115 s old now
    retention.after_batch(conn, [])
    assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (2,)
    assert retention.usage()["t"] == {"size": 2, "bound": 1000, "deleted": 3}
    conn.close()


def test_bounds_are_in_the_config_with_team_sized_defaults() -> None:
    cfg = parse_config(None, env={})
    assert cfg.routing.escalation.max_conversations == 10_000
    assert cfg.routing.escalation.max_turns == 20_000
    assert cfg.routing.escalation.fingerprint_cache == 1024
    assert cfg.routing.learn.remember_requests == 5_000
    assert cfg.routing.learn.remember_bytes == 16 * 1024 * 1024
    assert cfg.routing.learn.max_labels == 100_000
    given = parse_config(
        {
            "routing": {
                "escalation": {"max_turns": 7, "fingerprint_cache": 3},
                "learn": {
                    "remember_requests": 9,
                    "remember_bytes": 1 << 20,
                    "max_labels": 11,
                    "label_ttl_seconds": 60,
                },
            }
        },
        env={},
    )
    assert given.routing.escalation.max_turns == 7
    assert given.routing.learn.remember_bytes == 1 << 20
    assert given.routing.learn.label_ttl_seconds == 60.0


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("escalation", "max_turns", 0),
        ("escalation", "fingerprint_cache", "many"),
        ("learn", "remember_requests", -1),
        ("learn", "remember_bytes", 10),
        ("learn", "max_labels", 0),
        ("learn", "label_ttl_seconds", 0),
    ],
)
def test_bad_bounds_stop_the_start_naming_the_key(section: str, key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"routing\.{section}\.{key}"):
        parse_config({"routing": {section: {key: value}}}, env={})


def test_shipped_config_states_the_default_bounds() -> None:
    """conf/gateway.yaml is the reference: every bound it states is the default."""
    shipped = load_config(REPO_ROOT / "conf" / "gateway.yaml", env={})
    defaults = parse_config(None, env={})
    raw = shipped.raw["routing"]
    for section, keys in (
        ("escalation", ("max_conversations", "ttl_seconds", "max_turns", "fingerprint_cache")),
        ("learn", ("remember_requests", "remember_bytes", "max_labels", "label_ttl_seconds")),
    ):
        for key in keys:
            assert key in raw[section], f"routing.{section}.{key} is not in conf/gateway.yaml"
            assert getattr(getattr(shipped.routing, section), key) == getattr(
                getattr(defaults.routing, section), key
            ), key


def _delta(text: str) -> Any:
    return read_chunk({"choices": [{"index": 0, "delta": {"content": text}}], "model": "m"})


@pytest.mark.parametrize("keep_text", [True, False])
def test_a_stream_keeps_its_text_only_when_it_may_be_continued(keep_text: bool) -> None:
    sink = StreamSink(
        None,  # type: ignore[arg-type]  # no I/O: only the encoding is exercised
        response_id="r",
        include_usage=False,
        headers={},
        keep_text=keep_text,
    )
    for word in ("Hello", ", ", "world"):
        assert sink._encode(_delta(word)) is not None
    text, why = sink.partial_answer()
    if keep_text:
        assert (text, why) == ("Hello, world", None)
    else:
        assert sink.text_parts == [] and text == ""
        assert why is not None and "mid_stream" in why


def test_the_score_windows_hold_packed_vectors_and_rescore_as_dicts_did(tmp_path: Path) -> None:
    """The learned router's calibration windows keep each vector packed (10 bytes an entry,
    not 90), show in the memory block, and a re-score after learning reads them exactly."""
    router = Router(router_config(), store_path=None)
    long_ask = " ".join(f"word{i}" for i in range(400))
    for i in range(30):
        router.route(f"l{i}", ask(f"{i} {long_ask}"))
    windows = router.usage()["router_score_windows"]
    assert windows["size"] == 30 and windows["bound"] == 2 * 1000
    assert 30 * 400 * 10 < windows["bytes"] < 30 * 900 * 10, "about 10 bytes an entry"
    assert router.learn("l3", bad=True, source="feedback")
    model = router.models["ask"]
    expected = [model.score(router.asks.of(f"{i} {long_ask}").features) for i in range(30)]
    router._rescore("ask")
    assert router.calibrators["ask"].scores()[-30:] == expected
    router.close()
