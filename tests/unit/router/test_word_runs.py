"""The run prefilter: a pattern none of whose needed words (whole runs of ASCII `\\w`
characters) or marks a long ask holds is not scanned, and every search, count, feature, keyword
and verdict is the same as with the scan. Each pattern's words and marks are checked against ones
derived from its parsed source, and the prefilter against the patterns themselves on texts of
their own pieces."""

from __future__ import annotations

import re
from re import _constants as sre  # to read a parsed pattern in a test only
from re._parser import parse as sre_parse
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from text_strategies import any_case

from gateway.config import parse_config
from gateway.router import ascii_fold
from gateway.router.ascii_fold import FoldedPattern, FoldedText, word_runs
from gateway.router.asks import AskAnalyses
from gateway.router.classifier import TaskClassifier, content_signal
from gateway.router.features import ask_features
from gateway.router.heuristic import HeuristicScore
from unit.router.test_ascii_fold import (
    _BEYOND_ASCII,
    KEYWORDS,
    PATTERNS,
    _texts,
    _vocabulary,
    as_written,
)

# Tokens of an expanded pattern besides its literal characters: a place where a \w character
# meets a non-\w one (\b, (?<!\w), (?!\w)), and a stretch the expansion does not follow.
EDGE, GAP = "<edge>", "<gap>"
_WORD_CHAR = re.compile(r"[a-z0-9_]")


def _is_word_class(items: Any) -> bool:
    return list(items) == [(sre.IN, [(sre.CATEGORY, sre.CATEGORY_WORD)])]


def _expand(items: Any) -> list[list[str]]:
    """Every sequence of tokens the parsed `items` can match, literal characters spelled out
    (lower-cased), small classes of literals as their members, anything else a GAP."""
    out: list[list[str]] = [[]]
    for op, av in items:
        if op is sre.LITERAL:
            options = [[chr(av).lower()]]
        elif op is sre.IN and all(kind is sre.LITERAL for kind, _ in av) and len(av) <= 12:
            options = [[chr(value).lower()] for _, value in av]
        elif op is sre.AT and av is sre.AT_BOUNDARY:
            options = [[EDGE]]
        elif op is sre.ASSERT_NOT and _is_word_class(av[1]):
            options = [[EDGE]]  # (?<!\w) and (?!\w)
        elif op is sre.SUBPATTERN:
            options = _expand(av[3])
        elif op is sre.BRANCH:
            options = [seq for branch in av[1] for seq in _expand(branch)]
        elif op is sre.MAX_REPEAT and (av[0], av[1]) == (0, 1):
            options = [[], *_expand(av[2])]
        elif op is sre.MAX_REPEAT and av[0] >= 1:
            options = [[*seq, GAP] for seq in _expand(av[2])]
        else:
            options = [[GAP]]
        out = [[*seq, *more] for seq in out for more in options]
        assert len(out) < 5000
    return out


def _need(tokens: list[str]) -> tuple[str, str]:
    """What one expanded alternative needs: its first \\w run that edges or non-\\w characters
    bound, and the literal text from that run's start on (edges are of no width), as
    (run, phrase); else ("", its longest literal) for a mark."""
    for i, token in enumerate(tokens):
        if i and tokens[i - 1] == EDGE and _WORD_CHAR.fullmatch(token):
            end = i
            while end < len(tokens) and _WORD_CHAR.fullmatch(tokens[end]):
                end += 1
            after = tokens[end] if end < len(tokens) else GAP
            if after == EDGE or (after != GAP and not _WORD_CHAR.fullmatch(after)):
                rest = [t for t in tokens[i:] if t != EDGE]
                phrase = "".join(rest[: rest.index(GAP)] if GAP in rest else rest)
                return "".join(tokens[i:end]), phrase
    segments = "".join(t if len(t) == 1 else "\0" for t in tokens).split("\0")
    longest = max(segments, key=len)
    assert longest, f"nothing literal is needed by {tokens}"
    return "", longest


def derived(pattern: FoldedPattern) -> tuple[frozenset[tuple[str, str]], frozenset[str]]:
    """The (run, phrase) pairs and the marks a pattern's matches need, read from its parsed
    source: one of them is in each alternative of it."""
    needs = {_need(tokens) for tokens in _expand(sre_parse(pattern.source, pattern.flags).data)}
    return (
        frozenset((run, phrase) for run, phrase in needs if run),
        frozenset(mark for run, mark in needs if not run),
    )


def declared(pattern: FoldedPattern) -> tuple[frozenset[str], frozenset[str]]:
    """The words (phrases) and marks a pattern names, as its prefilter keeps them."""
    assert pattern.words is not None
    words = {
        phrase
        for run, phrases in pattern.phrases.items()
        for phrase in (phrases or (run.decode(),))
    }
    return frozenset(words), frozenset(pattern.marks)


def _covers(word: str, run: str, phrase: str) -> bool:
    """Whether a declared word stands for an alternative that needs `run` and `phrase`: it
    begins with that whole run, and the alternative's text begins with it."""
    leading = re.match(r"[a-z0-9_]+", word)
    return leading is not None and leading.group() == run and phrase.startswith(word)


def assert_declared_as_derived(pattern: FoldedPattern) -> None:
    """Every alternative of the pattern is covered by a declared word or is a declared mark,
    and every declared word or mark covers an alternative (none is left out, none is wrong)."""
    words, marks = declared(pattern)
    needs, needed_marks = derived(pattern)
    for run, phrase in needs:
        assert any(_covers(word, run, phrase) for word in words), (run, phrase)
    for word in words:
        assert any(_covers(word, run, phrase) for run, phrase in needs), word
    assert marks == needed_marks


@pytest.mark.parametrize(
    ("source", "needs", "marks"),
    [
        (r"\bhow (?:many|much)\b", {("how", "how many"), ("how", "how much")}, set()),
        (
            r"\b\d+/\d+\b|\b(?:halves|thirds?)\b",
            {(w, w) for w in ("halves", "third", "thirds")},
            {"/"},
        ),
        (r"[=+]|\bsum of\b|\bf\(x\)|\^", {("sum", "sum of"), ("f", "f(x)")}, {"=", "+", "^"}),
        (
            r"####\s*\S|\b(?:the )?answer\b|\\boxed\{",
            {("the", "the answer"), ("answer", "answer")},
            {"####", "\\boxed{"},
        ),
        (
            r"\bfirst\b.{1,80}\bthen\b|\btrade-?off\b",
            {("first", "first"), ("trade", "trade-off"), ("tradeoff", "tradeoff")},
            set(),
        ),
        (r"(?<!\w)(c\+\+|\.net|o'reilly)(?!\w)", {("c", "c++"), ("o", "o'reilly")}, {".net"}),
    ],
)
def test_the_derivation_reads_what_a_match_needs(
    source: str, needs: set[tuple[str, str]], marks: set[str]
) -> None:
    assert derived(FoldedPattern(source)) == (needs, marks)


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_each_pattern_names_exactly_the_words_and_marks_its_matches_need(name: str) -> None:
    """A word or mark left out of a pattern's declaration (or one that stands for nothing)
    fails here."""
    assert_declared_as_derived(PATTERNS[name])


@pytest.mark.parametrize(
    ("words", "marks"),
    [
        ("half halves third quarter quarters fifth fifths fraction".split(), "/"),  # thirds
        ("half halves third thirds quarter quarters fifth fifths fraction".split(), ""),
        ("half halves third thirds quarter quarters fifth fifths fraction x".split(), "/"),
        ("half halves third thirds quarter quarters fifth fifths fractions".split(), "/"),
    ],
)
def test_a_dropped_or_wrong_word_or_mark_is_caught(words: list[str], marks: str) -> None:
    pattern = PATTERNS["_FRACTION"]
    wrong = FoldedPattern(pattern.source, pattern.flags, words=words, marks=marks)
    with pytest.raises(AssertionError):
        assert_declared_as_derived(wrong)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([*KEYWORDS, ".net", "_init", "3d", "a.b", "-x", "x-", "k8s"])))
def test_configured_keywords_name_the_words_and_marks_they_need(keywords: list[str]) -> None:
    pattern = TaskClassifier(keywords, 200).keywords
    if pattern is not None:
        assert_declared_as_derived(pattern)


def test_the_runs_are_the_maximal_word_runs_of_every_ascii_character() -> None:
    text = "".join(map(chr, range(128))) * 2 + " a_b c9 _ 12 x'y"
    assert word_runs(text.lower()) == {r.encode() for r in re.findall(r"\w+", text.lower())}


def with_runs(text: str) -> FoldedText:
    """`text` folded with its runs whatever its length (as `FoldedText.of` does when long)."""
    lowered = FoldedText.of(text).lowered
    return FoldedText(text, lowered, word_runs(lowered) if lowered is not None else None)


# Signs beyond ASCII, a few of each kind: typographic quotes and dashes, arrows, box drawing,
# emoji. Like letters of other scripts, they take the twins, and they end a run.
_SIGN_SAMPLE = [
    *"\u00a0\u00a9\u00b0\u00b7\u00bb\u00d7\u2013\u2014\u2018\u2019\u201c\u201d\u2022\u2026",
    *"\u2032\u20ac\u2192\u2264\u2500\u2502\u25b6\u2713\u2717\U0001f600\U0001f44d",
]


def test_every_character_but_four_leaves_the_twin_exact() -> None:
    """Every code point beyond ASCII but `FOLDS_INTO_ASCII` lower-cases to one character beyond
    ASCII of its own kind (\\w, \\d, \\s or none) and matches no ASCII character under
    IGNORECASE (ascii_fold's docstring): the twin finds in text with it what the pattern as
    written finds. Each of the four fails one of these."""
    beyond = "".join(map(chr, range(0x80, 0x110000)))  # lone surrogates too
    # The characters an ASCII character's literal or class matches under IGNORECASE: one scan.
    folding = set(re.findall(r"[\x00-\x7f]", beyond, re.IGNORECASE))
    kinds = [re.compile(kind) for kind in (r"\w", r"\d", r"\s")]

    def exact(char: str) -> bool:
        lowered = char.lower()
        return (
            len(lowered) == 1
            and not lowered.isascii()
            and char not in folding
            and all((kind.match(char) is None) == (kind.match(lowered) is None) for kind in kinds)
        )

    # A character that lower-cases to itself is one of its own kind: folding alone can fail it.
    moved = [char for char in beyond if char.lower() != char]
    inexact = folding.union(char for char in moved if not exact(char))
    assert "".join(sorted(inexact)) == ascii_fold.FOLDS_INTO_ASCII
    # The class above against each ASCII letter on its own (a literal compiles otherwise).
    for code in [*range(65, 91), *range(97, 123)]:
        found = set(re.findall(chr(code), beyond, re.IGNORECASE))
        assert found <= set(ascii_fold.FOLDS_INTO_ASCII), chr(code)
    assert FoldedText.of("It\u2019s \u2014 \u2713 OK").lowered == "it\u2019s \u2014 \u2713 ok"
    assert FoldedText.of("Caf\u00c9 \u03a3\u039f\u03a3").lowered == "caf\u00e9 \u03c3\u03bf\u03c2"
    assert word_runs("it\u2019s\u2014a_b\U0001f600c") == {b"it", b"s", b"a_b", b"c"}
    assert word_runs("caf\u00e9 na\u00efve \u4e2dx\ud800y") == {b"caf", b"na", b"ve", b"x", b"y"}


_SIGNS = ["=", "+", "*", "/", "^", "%", "<", ">", "$", "#", "(", ")", "{", "}", "\\", ":", "-"]
_PIECES = st.one_of(
    any_case(_vocabulary()),
    any_case(["f(x)", "c++", "####", "\\boxed{", "1/2", "trade-off", "step-by-step", "o'reilly"]),
    st.sampled_from([" ", "\n", "_", "'", "0", "7", "12", "3.5", ". ", "? ", "x", "s", "es"]),
    st.sampled_from(_SIGNS),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=3),
)
_OTHERS = st.sampled_from(_BEYOND_ASCII + _SIGN_SAMPLE)
_TEXTS = st.lists(st.one_of(_PIECES, _OTHERS), max_size=30).map("".join)


def _literal_pieces(pattern: FoldedPattern) -> list[str]:
    """A pattern's own literal pieces ("how many", "f(x)", "the final answer is"), and their
    words."""
    pieces: set[str] = set()
    for tokens in _expand(sre_parse(pattern.source, pattern.flags).data):
        spelled = "".join("" if t == EDGE else "\0" if t == GAP else t for t in tokens)
        pieces.update(piece for piece in spelled.split("\0") if piece)
    return sorted(pieces | {w for piece in pieces for w in re.findall(r"\w+", piece)})


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_each_literal_piece_alone_is_found_the_same_with_the_runs(name: str) -> None:
    """Every piece on its own, bare, spaced, or by a number: each word of the pattern is
    tried where it is the only one the text holds."""
    pattern = PATTERNS[name]
    for piece in _literal_pieces(pattern):
        for text in (piece, f" {piece} ", f"{piece} 12", f"1 {piece}", f"x{piece}_", piece.upper()):
            found, expected = pattern.search(with_runs(text)), pattern.search(FoldedText.of(text))
            assert (found and found.span()) == (expected and expected.span()), text
            assert pattern.count(with_runs(text)) == pattern.count(FoldedText.of(text)), text


def _own_pieces(pattern: FoldedPattern) -> st.SearchStrategy[str]:
    """Texts mostly of one pattern's own literal pieces, in any case, among the other pieces."""
    own = any_case(_literal_pieces(pattern))
    return st.lists(st.one_of(own, own, _PIECES, _OTHERS), max_size=12).map("".join)


_OWN = {name: _own_pieces(pattern) for name, pattern in PATTERNS.items()}


@settings(max_examples=1500, deadline=None)
@given(st.data(), st.sampled_from(sorted(PATTERNS)))
def test_the_prefilter_finds_and_counts_what_the_scan_does(data: st.DataObject, name: str) -> None:
    """Each pattern on a text of its own pieces: with the runs known, the same first match and
    count as the pattern's source alone (IGNORECASE, no lookahead) and as without the runs."""
    pattern = PATTERNS[name]
    text = data.draw(st.one_of(_OWN[name], _TEXTS))
    plain = re.compile(pattern.source, pattern.flags | re.IGNORECASE)
    expected = plain.search(text)
    folded = with_runs(text)
    found = pattern.search(folded)
    assert (found and found.span()) == (expected and expected.span())
    assert pattern.count(folded) == len(plain.findall(text))
    assert pattern.count(folded) == pattern.count(FoldedText.of(text))


CLASSIFIER = TaskClassifier([*KEYWORDS, ".net", "_init"], 20)


def _everything(ask: str | FoldedText) -> tuple[object, ...]:
    return (
        ask_features(ask, CLASSIFIER.keyword_count(ask)),
        CLASSIFIER.keyword(ask),
        CLASSIFIER.classify_ask(ask),
        content_signal(ask),
    )


@settings(max_examples=400, deadline=None)
@given(_TEXTS)
def test_features_keywords_and_verdicts_are_the_same_with_the_runs(text: str) -> None:
    """With the runs, with the twins alone, and with every pattern as written over the text as
    it is: the same features, keyword, verdict and reason."""
    assert _everything(with_runs(text)) == _everything(text) == _everything(as_written(text))


def test_the_replay_data_is_analysed_the_same_with_the_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every ask and answer of the RouteLLM replay data, with the runs gathered at any length:
    `AskAnalyses.analyse` gives what each part gives when it folds and scans the ask itself."""
    monkeypatch.setattr(ascii_fold, "RUNS_FROM", 0)
    routing = parse_config({}, env={}).routing
    for classifier in (CLASSIFIER, TaskClassifier(routing.complexity_keywords, 200)):
        analyses = AskAnalyses(classifier, HeuristicScore(classifier))
        for text in _texts():
            analysis = analyses.analyse(text)
            assert analysis.features == ask_features(text, classifier.keyword_count(text))
            assert analysis.keyword == classifier.keyword(text)
            assert analysis.verdict == classifier.classify_ask(text)


def test_short_text_and_text_folding_into_ascii_have_no_runs() -> None:
    assert FoldedText.of("x" * (ascii_fold.RUNS_FROM - 1), runs=True).runs is None
    assert FoldedText.of("x" * ascii_fold.RUNS_FROM, runs=True).runs == {
        b"x" * ascii_fold.RUNS_FROM
    }
    assert FoldedText.of("x" * ascii_fold.RUNS_FROM).runs is None
    assert FoldedText.of("\u212a" * 100, runs=True).runs is None
    assert FoldedText.of("\u2019" * 100, runs=True).runs == frozenset()


_KEYWORD_CHARS = "abxyzAK019_ '-.+#$()[]*?\\|^/:\"=\t\u2019\u00a0\u2014\u212a\u017f\u00e9"


@settings(max_examples=200, deadline=None)
@given(st.data(), st.lists(st.text(_KEYWORD_CHARS, min_size=1, max_size=5), min_size=1, max_size=6))
def test_any_configured_keywords_are_found_and_counted_the_same_with_the_runs(
    data: st.DataObject, keywords: list[str]
) -> None:
    """Keywords of any spelling (signs first or last, spaces, capitals, characters beyond
    ASCII), in a long text of themselves in any case: the first keyword and the count are
    those of the keyword pattern as configured, without twin or prefilter."""
    classifier = TaskClassifier(keywords, 200)
    words = sorted({k.strip().lower() for k in keywords if k.strip()}, key=len, reverse=True)
    if classifier.keywords is None:
        assert not words
        return
    plain = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, words)) + r")(?!\w)", re.I)
    pieces = st.one_of(any_case(keywords), st.sampled_from([*_KEYWORD_CHARS, "\n", "\u212a"]))
    text = "".join(data.draw(st.lists(pieces, max_size=20))) + " " * ascii_fold.RUNS_FROM
    match = plain.search(text)
    folded = FoldedText.of(text, runs=True)
    assert classifier.keyword(folded) == (match.group(1).lower() if match else None)
    assert classifier.keyword_count(folded) == len(plain.findall(text))
