"""Case-insensitive patterns on text of any script but four characters: the lower-cased twin
finds exactly what the pattern as written finds, so the router's features (and its shipped
weights) see the same values."""

from __future__ import annotations

import json
import math
import re
import zlib
from pathlib import Path
from re import _constants as sre  # to read a parsed pattern in a test only
from re._parser import parse as sre_parse
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from text_strategies import any_case

from gateway.router import classifier, features
from gateway.router.ascii_fold import FoldedPattern, FoldedText, _lower_outside_escapes
from gateway.router.classifier import TaskClassifier, content_signal
from gateway.router.features import ask_features, draft_features, hedges

ROUTELLM = Path(__file__).resolve().parents[3] / "bench" / "data" / "routellm"
KEYWORDS = ["refactor", "Kubernetes", "C++", "step by step", "o'reilly"]
PATTERNS = {
    name: value
    for module in (features, classifier)
    for name, value in vars(module).items()
    if isinstance(value, FoldedPattern)
}
KEYWORD_PATTERN = TaskClassifier(KEYWORDS, 200).keywords
assert KEYWORD_PATTERN is not None
PATTERNS["keywords"] = KEYWORD_PATTERN


def as_written(text: str) -> FoldedText:
    """The text without its lower-cased form: the pattern as written is searched."""
    return FoldedText(text, None)


def test_every_case_insensitive_pattern_of_the_router_has_a_twin() -> None:
    assert len(PATTERNS) >= 16
    assert all(pattern.lowered is not None for pattern in PATTERNS.values())
    assert not any(pattern.lowered.flags & re.IGNORECASE for pattern in PATTERNS.values())


@pytest.mark.parametrize(
    ("source", "lowered"),
    [
        (r"\bI AM\b", r"\bi am\b"),
        (r"\S+\W\D\B", r"\S+\W\D\B"),  # escapes keep their letter and so their meaning
        (r"\\boxed\{", r"\\boxed\{"),
        (r"[a-z\]A]", None),  # a capital inside a class ([A-z] spans signs too)
        (r"[]A]", None),
        (r"x[^]]Y", r"x[^]]y"),
        (r"\x41", None),  # escapes naming a character by its code
        (r"\u0041", None),
        (r"\N{LATIN CAPITAL LETTER A}", None),
        (r"\101", None),
        (r"(?P<Word>A)", None),
        (r"(?-i:ABC)", None),  # an inline flag group may turn folding off
        (r"[!-_]", None),  # a range of signs that spans the capitals
        (r"x[0-a]", None),
        (r"[a-z0-9]+", r"[a-z0-9]+"),
        (r"[-a][a-][^-a]", r"[-a][a-][^-a]"),  # a dash first or last is itself
        (r"[]a-c]", r"[]a-c]"),  # so is a bracket first
        ("caf\u00e9", None),
    ],
)
def test_patterns_are_lower_cased_outside_their_escapes(source: str, lowered: str | None) -> None:
    assert _lower_outside_escapes(source) == lowered


def test_text_with_a_character_folding_into_ascii_is_searched_as_written() -> None:
    """Folding reaches into ASCII from four characters: the Kelvin sign matches k, the long s
    matches s; a text with one of them has no lower-cased form."""
    units = PATTERNS["_UNITS"]
    for text in ("5 \u212ag", "a \u017fecond"):
        folded = FoldedText.of(text)
        assert folded.lowered is None
        assert units.found(folded)
    assert not units.found(FoldedText.of("5 kilo"))


@pytest.mark.parametrize("after", ["\u0391 then", "a then", "\u0301x then"])
def test_the_reason_phrase_is_cut_from_the_ask_as_given(after: str) -> None:
    """The reasoning phrase of `content_signal` is cut at 40 characters and then lower-cased: a
    capital sigma that is the 40th is a final sigma there, though in the lower-cased ask (where
    the twin matches, with the same span) a letter follows it and it is not."""
    text = "first " + "a" * 32 + "\u0391\u03a3" + after
    fast = FoldedText.of(text)
    assert fast.lowered is not None
    assert fast.lowered[39] == "\u03c3"  # medial sigma: a letter follows it
    reason = "complex: multi-step reasoning ('first " + "a" * 32 + "\u03b1\u03c2')"
    assert content_signal(fast) == content_signal(as_written(text)) == reason


def _vocabulary() -> list[str]:
    """The words and the phrases (words a space apart) the patterns are written with."""
    words = {
        w for p in PATTERNS.values() for w in re.findall(r"[A-Za-z']+(?: [A-Za-z']+)*", p.source)
    }
    words |= {w for phrase in words for w in phrase.split()}
    return sorted(words | {"I'm", "don't", "f(x)", "$", "%", "^", "####", "\\boxed{", "C++"})


# Characters beyond ASCII. The four whose case folds reach into ASCII letters (the Kelvin sign,
# the long s, dotted and dotless i): text with one of them is searched as written. Then letters,
# marks and digits of other scripts, which take the twins: sharp s and its capital, accented
# Latin, Greek sigma in its three forms, Cyrillic, Armenian, Cherokee and Georgian of both
# cases, a titlecase digraph, a ligature, the Angstrom and micro signs, a combining accent, a
# superscript two, digits that are not ASCII, CJK, and a lone surrogate (valid in JSON).
_BEYOND_ASCII = [
    *"\u212a\u017f\u0130\u0131",
    *"\u00df\u1e9e\u00e9\u00c9\u03a3\u03c3\u03c2\u0414\u0434\u0531\u0561\u13a0\uab70",
    *"\u10a0\u2d00\u01c5\u01c4\ufb01\u212b\u00b5\u0301\u00b2\u0663\uff13\u4e2d\ud800",
]


_PIECES = st.one_of(
    any_case(_vocabulary()),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=4),
    st.sampled_from([" ", "  ", "\n", ". ", "? ", "1/2", "3.5", "12,000", "_", "-", "'"]),
)


def _first_characters(items: Any) -> tuple[set[str], bool]:
    """The characters a match of the parsed `items` can begin with ("\\d" for any digit) and
    whether it can match nothing; fails on what it does not know (then extend it)."""
    firsts: set[str] = set()
    for op, av in items:
        if op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT):
            continue  # zero width: the next item begins the match
        if op is sre.LITERAL:
            return firsts | {chr(av)}, False
        if op is sre.IN:
            for kind, value in av:
                if kind is sre.LITERAL:
                    firsts.add(chr(value))
                elif kind is sre.RANGE:
                    firsts.update(chr(c) for c in range(value[0], value[1] + 1))
                elif kind is sre.CATEGORY and value is sre.CATEGORY_DIGIT:
                    firsts.add("\\d")
                else:
                    raise AssertionError(f"unknown class member {kind} {value}")
            return firsts, False
        if op is sre.SUBPATTERN:
            inner, empty = _first_characters(av[3])
        elif op is sre.BRANCH:
            inner, empty = set(), False
            for branch in av[1]:
                chars, branch_empty = _first_characters(branch)
                inner |= chars
                empty = empty or branch_empty
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            inner, empty = _first_characters(av[2])
            empty = empty or av[0] == 0
        else:
            raise AssertionError(f"unknown item {op}")
        firsts |= inner
        if not empty:
            return firsts, False
    return firsts, True


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_starts_hold_every_first_character_of_a_match(name: str) -> None:
    """Read from the parsed source: every character a match can begin with is in `starts`
    (lower-cased; a digit as \\d), so the lookahead only skips positions where no match begins."""
    pattern = PATTERNS[name]
    starts = re.search(r"^\(\?=\[(.*?)\]\)", pattern.pattern.pattern)
    if starts is None:
        pytest.skip("no lookahead")
    firsts, empty = _first_characters(sre_parse(pattern.source, pattern.flags).data)
    assert not empty
    allowed = set(re.sub(r"\\(.)", r"\1", starts.group(1).replace("\\d", ""))) | (
        {"\\d"} if "\\d" in starts.group(1) else set()
    )
    assert {c.lower() for c in firsts} <= allowed


@settings(max_examples=600, deadline=None)
@given(
    st.lists(st.one_of(_PIECES, st.sampled_from(_BEYOND_ASCII)), max_size=30).map("".join),
    st.sampled_from(sorted(PATTERNS)),
)
def test_the_lookahead_of_starts_loses_no_match(text: str, name: str) -> None:
    """Each pattern, through the twin or as written, finds what its source alone finds (no
    lookahead, IGNORECASE): the `starts` class holds every character a match begins with."""
    pattern = PATTERNS[name]
    plain = re.compile(pattern.source, pattern.flags | re.IGNORECASE)
    expected = plain.search(text)
    for folded in (FoldedText.of(text), as_written(text)):
        found = pattern.search(folded)
        assert (found and found.span()) == (expected and expected.span())
        assert pattern.count(folded) == len(plain.findall(text))


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=30).map("".join), st.sampled_from(sorted(PATTERNS)))
def test_the_twin_finds_the_same_matches_in_ascii_text(text: str, name: str) -> None:
    pattern = PATTERNS[name]
    fast, slow = FoldedText.of(text), as_written(text)
    assert fast.lowered is not None
    found, expected = pattern.search(fast), pattern.search(slow)
    assert (found and found.span()) == (expected and expected.span())
    assert pattern.count(fast) == pattern.count(slow)


def _texts() -> list[str]:
    texts = []
    for path in sorted(ROUTELLM.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            texts += [v for v in row.values() if isinstance(v, str) and len(v) > 3]
    return texts


def _ngrams_by_gram_strings(text: str, prefix: str) -> dict[int, float]:
    """The n-gram vector as first written: each distinct gram string hashed on its own."""
    apostrophes = str.maketrans({"\u2019": "'", "\u2018": "'"})
    words = features._WORD.findall(text.translate(apostrophes).lower())
    grams = {f"{prefix}{w}" for w in words}
    grams.update(f"{prefix}{a} {b}" for a, b in zip(words, words[1:], strict=False))
    out: dict[int, float] = {}
    for gram in grams:
        index = zlib.crc32(gram.encode("utf-8")) & (features.HASH_SIZE - 1)
        out[index] = out.get(index, 0.0) + 1.0
    if not out:
        return {}
    scale = 1.0 / math.sqrt(sum(v * v for v in out.values()))
    return {i: v * scale for i, v in out.items()}


def test_features_are_the_same_either_way_on_the_replay_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every ask and answer of the RouteLLM replay data: ask and draft features, hedges, the
    classifier's reasons and keywords are the same through the twins as through the patterns
    as written, and the n-grams are those of the gram strings."""
    texts = _texts()
    assert len(texts) > 1000
    clf = TaskClassifier(KEYWORDS, 200)

    def everything() -> list[object]:
        return [
            (
                ask_features(t, clf.keyword_count(t)),
                draft_features(t, 40, complete=True, ask=t[:300]),
                hedges(t),
                content_signal(t),
                clf.keyword(t),
                clf.classify_ask(t).reason,
            )
            for t in texts
        ]

    fast = everything()
    with monkeypatch.context() as patched:
        patched.setattr(FoldedText, "of", classmethod(lambda cls, text: cls(text, None)))
        slow = everything()
    assert fast == slow
    for text in texts[:500]:
        assert features._ngrams(text, "a:") == _ngrams_by_gram_strings(text, "a:")


def test_the_heuristic_feature_reads_what_the_classifier_reads() -> None:
    """`ask_heuristic` is set exactly when a keyword is named or `content_signal` gives a
    reason, though it reuses the facts the other features read."""
    index = features._INDEX["ask_heuristic"]
    for text in _texts()[:800] + ["a?b?c?", "1. x\n2. y\n3. z", "```py", "Explain why"]:
        for hits in (0, 1):
            expected = hits > 0 or content_signal(text) is not None
            assert (ask_features(text, hits).get(index) == 1.0) == expected
