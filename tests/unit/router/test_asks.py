"""An ask is analysed once per distinct text: the kept analysis is the fresh one, bounded, shared
read-only, and reused by both router kinds."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import GatewayConfig, parse_config
from gateway.router import Router
from gateway.router.asks import AskAnalyses, analysis_bytes
from gateway.router.classifier import _TOOL_RESULT, TaskClassifier, _human_text
from gateway.router.features import _straight_quotes, ask_features
from gateway.router.heuristic import HeuristicScore
from gateway.router.packed import unpack
from gateway.router.store import encode_features

PASTE = (Path(__file__).parents[3] / "gateway" / "router" / "features.py").read_text()[:10_000]


def config(**routing: object) -> GatewayConfig:
    return parse_config({"routing": routing}, env={})


def body(text: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}]}


def analyses(max_asks: int = 8, max_bytes: int = 1 << 20) -> AskAnalyses:
    classifier = TaskClassifier(["debug", "refactor"], 1000)
    return AskAnalyses(
        classifier, HeuristicScore(classifier), max_asks=max_asks, max_bytes=max_bytes
    )


ASKS = [
    "",
    "hello",
    "Please debug this: it fails.",
    "Why does it fail? What is wrong? How do I fix it?",
    "Rename the function load to read in src/io.py.",
    "```python\ndef f():\n    return 1\n```",
    "It\u2019s 3.5% of $12 \u2018twice\u2019 per hour",
    "Here is my code, why does it fail?\n" + PASTE,
]


@pytest.mark.parametrize("ask", ASKS, ids=range(len(ASKS)))
def test_a_kept_analysis_is_what_a_fresh_one_is(ask: str) -> None:
    kept = analyses()
    first = kept.of(ask)
    again = kept.of(ask)
    assert again is first
    classifier = kept.classifier
    assert first.features == ask_features(ask, classifier.keyword_count(ask))
    assert first.keyword == classifier.keyword(ask)
    assert first.verdict == classifier.classify_ask(ask)
    assert unpack(first.packed) == first.features
    assert first.encoded == encode_features(first.features)
    assert kept.score(first) == kept.heuristic.score(ask)
    assert kept.counts() == {"analysed": 1, "reused": 1}


def test_the_kept_analyses_stay_within_their_bounds() -> None:
    kept = analyses(max_asks=3)
    for i in range(10):
        kept.of(f"ask number {i}")
    assert len(kept.kept) == 3
    assert list(kept.kept) == ["ask number 7", "ask number 8", "ask number 9"]
    assert kept.kept.usage()["evicted"] == 7

    small = analyses(max_bytes=64 * 1024)
    pasted = small.of(PASTE)
    assert analysis_bytes(PASTE, pasted) > 64 * 1024
    assert len(small.kept) == 0, "an analysis larger than the whole bound is not kept"
    assert small.of(PASTE) is not pasted
    assert small.counts() == {"analysed": 2, "reused": 0}
    for i in range(200):
        small.of(f"another ask {i} with a few more words to weigh")
    assert small.kept.bytes <= 64 * 1024


def test_old_encoding_is_kept() -> None:
    """router.db's rows are as before: [index, value rounded to 6 places], by index."""
    vector = ask_features("Why does it fail? " + PASTE, 2)

    def before(v: dict[int, float]) -> str:
        return orjson.dumps([[i, round(x, 6)] for i, x in sorted(v.items())]).decode()

    assert encode_features(vector) == before(vector)
    assert encode_features({}) == "[]"


def rounded_each(vector: dict[int, float]) -> str:
    """The encoding as first written: each value rounded on its own."""
    return orjson.dumps([[i, round(x, 6)] for i, x in sorted(vector.items())]).decode()


@pytest.mark.parametrize(
    "vector",
    [{0: -0.0, 1: 0.0}, {0: 0.0, 1: -0.0}, {0: 1.0, 1: 1}, {0: 1, 1: 1.0}, {0: 2.5e-7, 1: 0.0}],
    ids=["minus-zero-first", "zero-first", "float-then-int", "int-then-float", "rounds-to-zero"],
)
def test_values_equal_as_keys_but_written_apart_are_each_written_as_before(
    vector: dict[int, float],
) -> None:
    """0.0 and -0.0 (or 1 and 1.0) are one key of the rounding memo, yet JSON writes them
    apart: each is still written as it was."""
    assert encode_features(vector) == rounded_each(vector)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(0, 5000), st.floats(allow_nan=False, allow_infinity=False)))
def test_encoding_matches_rounding_each_value(vector: dict[int, float]) -> None:
    assert encode_features(vector) == rounded_each(vector)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab '\u2019\u2018\u201c\n")))
def test_straight_quotes_is_the_translation_table(text: str) -> None:
    table = str.maketrans({"\u2019": "'", "\u2018": "'"})
    assert _straight_quotes(text) == text.translate(table)


_RESULT_PIECES = st.sampled_from(
    ["[read_file for 'a.py'] Result:", "] Result:", "[x]", " Result:", "\n", "  ", "text", "["]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_RESULT_PIECES, max_size=12).map("".join))
def test_the_literal_check_before_the_tool_result_pattern_changes_nothing(text: str) -> None:
    expected = "" if _TOOL_RESULT.search(text) else text.strip()
    # No tags and no environment details: only the tool-result rule decides.
    assert _human_text(text) == expected


@pytest.mark.parametrize("kind", ["heuristic", "learned"])
def test_the_router_reuses_an_analysis_and_decides_as_before(kind: str, tmp_path: Path) -> None:
    store = tmp_path / "router.db"
    router = Router(config(router=kind), store_path=store)
    fresh = Router(config(router=kind))
    for n, ask in enumerate(ASKS * 2):
        decision = router.route(f"req-{n}", body(ask))
        fresh.asks.kept.pop(ask)  # analysed afresh each time
        assert decision == fresh.route(f"req-{n}", body(ask))
    assert router.snapshot()["asks"] == {"analysed": len(ASKS), "reused": len(ASKS)}
    assert router.usage()["router_asks"]["size"] == len(ASKS)
    router.flush()
    with sqlite3.connect(store) as db:
        rows = dict(db.execute("SELECT request_id, vector FROM features WHERE kind = 'ask'"))
    pasted = router.ask_text(body(ASKS[7]))  # as the router reads it: stripped
    assert (
        rows["req-7"]
        == rows[f"req-{7 + len(ASKS)}"]
        == encode_features(ask_features(pasted, router.classifier.keyword_count(pasted)))
    )
    router.close()
    fresh.close()


def test_learning_leaves_the_shared_analysis_as_it_was() -> None:
    router = Router(config(router="learned"))
    router.route("req-1", body("name three colours of the rainbow"))
    analysis = router.asks.of("name three colours of the rainbow")
    features, packed = dict(analysis.features), (list(analysis.packed[0]), list(analysis.packed[1]))
    router.route("req-2", body(analysis.text))
    before = router.score("req-2")
    assert router.learn("req-1", bad=True, source="feedback")
    assert router.learn("req-2", bad=True, source="feedback")
    assert analysis.features == features
    assert (list(analysis.packed[0]), list(analysis.packed[1])) == packed
    after = router.score("req-2")
    assert before is not None and after is not None and after > before
    router.close()


def test_a_judged_draft_reads_the_kept_analysis() -> None:
    router = Router(config(router="learned"))
    ask = "What is 12 * 7? Answer with a number."
    router.route("req-1", body(ask))
    decision = router.judge_draft("req-1", body(ask), "12 * 7 = 84. #### 84", 9, complete=True)
    assert re.match(r"learned: p\(local fails\)=", decision.reason)
    assert router.snapshot()["asks"] == {"analysed": 1, "reused": 1}
    router.close()


def test_ngram_entries_come_in_the_order_the_grams_first_occur() -> None:
    """Not in a set's order, which follows the process's string hashing: the same vector, entry
    for entry, in every process, so sums over it agree to the last bit."""
    from gateway.router.features import _ngrams, stable_hash

    vector = _ngrams("b a c a b", "a:")
    grams = ["b", "a", "c", "b a", "a c", "c a", "a b"]
    expected = list(dict.fromkeys(stable_hash("a:" + gram) for gram in grams))
    assert list(vector) == expected


def test_marks_without_words_are_refused() -> None:
    """`words=None` turns the prefilter off, so marks given alone would silently never count."""
    from gateway.router.ascii_fold import FoldedPattern

    with pytest.raises(ValueError, match="words=\\(\\)"):
        FoldedPattern(r"%", marks=["%"])
    assert FoldedPattern(r"%", words=(), marks=["%"]).marks == ("%",)
