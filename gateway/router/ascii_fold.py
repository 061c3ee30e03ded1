"""Case-insensitive patterns searched about three times faster, in text of any script.

Python's `re` folds the case of every character it compares under IGNORECASE, which makes such
a search about three times slower than the same search without the flag; the router's features
run some twenty of them over each ask, and an ask can be a pasted file of many kilobytes. An
IGNORECASE pattern written in ASCII matches exactly where its lower-cased twin (the flag dropped)
matches in the lower-cased text, when every character of the text beyond ASCII lower-cases to
one character, beyond ASCII, of its own kind (`\\w`, `\\d`, `\\s` or none), and folds to no
ASCII character: ASCII letters fold only to each other, and such a character matches no literal
of the pattern either way, nor moves when the text is lower-cased, so the matches, their spans
and their number are the same. Every character but `FOLDS_INTO_ASCII` qualifies (letters of
any script, accents, digits, signs, emoji; a test checks each code point): the dotted capital I
(lower-cased to two characters), the dotless i, the long s and the Kelvin sign (each matches an
ASCII letter under IGNORECASE). Text with one of them keeps the pattern as it was written.

The matched text is the lower-cased one, which is not always the match's own text lower-cased:
a capital sigma lower-cases to a final sigma only where no letter follows it, so a caller that
cuts a match before lower-casing it takes it from `FoldedText.text` (at the same span).

A pattern is lower-cased outside its escapes (`\\b`, `\\S` keep their meaning); one with an
escape that names a character by its code (`\\x41`, `\\u0041`, `\\N{...}`, octal), a named
group, an inline flag group (`(?-i:...)`), or a capital or a range other than lower-case
letters or digits inside a character class (`[!-_]` spans the capitals) keeps only the pattern
as written.

Over a long text most of these patterns find nothing, yet each scans the whole text. A
pattern may name what every match of it needs: one of its `words`, or one of its `marks`
(literal strings) anywhere. A word is a phrase that begins with a whole run (a maximal run of
`\\w` characters: a-z, 0-9 and `_` in the lower-cased form), such as "how many" or "f(x)": the
text must hold that run, and the phrase. A `FoldedText` built with `runs=True` holds the set of
its runs (gathered in one pass, when the text is long enough for that to pay), and a pattern none
of whose words or marks the text holds has no match there, known without a scan: `search` and
`count` give the same either way, only sooner.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_CODE_ESCAPES = frozenset("xuUN01234567")
# An inline flag group may turn case folding off for a part, which the twin cannot follow.
_INLINE_FLAGS = re.compile(r"\(\?[aiLmsux-]")
# Below this length a text's runs cost more to gather (about a microsecond) than the scans they
# spare; measured with `scripts/bench_ask_analysis.py --runs-from`: even at 12 characters.
RUNS_FROM = 32
# The ASCII \w characters a needed word begins with: its run.
LEADING_RUN = re.compile(r"[a-z0-9_]+")
# The only characters beyond ASCII that leave the twin inexact (module docstring): U+0130 DOTTED
# CAPITAL I, U+0131 DOTLESS I, U+017F LONG S, U+212A KELVIN SIGN. A test checks every code point.
FOLDS_INTO_ASCII = "\u0130\u0131\u017f\u212a"
_FOLDS_FURTHER = re.compile(f"[{FOLDS_INTO_ASCII}]")
# The ASCII \w bytes kept and every other byte made a space (those of a character beyond ASCII
# too, in its UTF-8 form), so that `bytes.split` gives the runs: every maximal run of ASCII \w
# characters, which holds every run a pattern's words need (a run with a letter beyond ASCII in
# it is cut into pieces that need not be runs; those only cost a scan).
_RUN_BYTES = bytes(c if c < 128 and (chr(c).isalnum() or c == 95) else 32 for c in range(256))


class FoldedText:
    """A text and, unless it holds one of `FOLDS_INTO_ASCII`, its lower-cased form (else
    None); `runs`: the set of the maximal runs of ASCII `\\w` characters of that form, as bytes,
    when they were asked for and the text is long enough (else None)."""

    __slots__ = ("text", "lowered", "runs")

    def __init__(
        self, text: str, lowered: str | None, runs: frozenset[bytes] | None = None
    ) -> None:
        self.text = text
        self.lowered = lowered
        self.runs = runs

    @classmethod
    def of(cls, text: str, *, runs: bool = False) -> FoldedText:
        """`text` folded; `runs=True` for a text several patterns will read (module docstring)."""
        if not text.isascii() and _FOLDS_FURTHER.search(text) is not None:
            return cls(text, None)
        lowered = text.lower()
        if not runs or len(lowered) < RUNS_FROM:
            return cls(text, lowered)
        return cls(text, lowered, word_runs(lowered))


def word_runs(lowered: str) -> frozenset[bytes]:
    """The maximal runs of ASCII `\\w` characters (letters, digits, `_`) of a lower-cased form;
    any other character ends a run."""
    # surrogatepass: a lone surrogate (valid in JSON) is a character beyond ASCII like any other
    return frozenset(lowered.encode("utf-8", "surrogatepass").translate(_RUN_BYTES).split())


def folded(text: str | FoldedText) -> FoldedText:
    """`text` as a `FoldedText` (one already folded as it is)."""
    return text if isinstance(text, FoldedText) else FoldedText.of(text)


class FoldedPattern:
    """An IGNORECASE pattern with the same `search`/`count` on a `FoldedText` either way.

    `starts`, when given, is the body of a character class holding every character a match
    can begin with (lower-case; `\\d` for digits): a lookahead of it goes in front, so a
    search skips every other position at once instead of trying each alternative there, two
    to three times faster over long text. The class is folded like the pattern, so it adds
    no condition the pattern does not have; a class missing a start would lose matches.

    `words` and `marks` (lower-case ASCII), when `words` is given, are what every match needs
    (module docstring): one of the `words`, each a phrase that begins with a whole run and is
    the beginning of a match's own text from that run on, or one of the `marks`. A missing word
    or mark would lose matches in a text whose runs are known; a test derives them from each
    parsed pattern."""

    __slots__ = ("source", "flags", "pattern", "lowered", "words", "phrases", "marks")

    def __init__(
        self,
        source: str,
        flags: int = 0,
        *,
        starts: str | None = None,
        words: Iterable[str] | None = None,
        marks: Iterable[str] = (),
    ) -> None:
        self.source = source
        self.flags = flags
        # Each needed run, and the phrases from it the text must hold: none when the run alone
        # is a word of the pattern.
        self.phrases: dict[bytes, tuple[str, ...]] = {}
        for word in words or ():
            run = LEADING_RUN.match(word)
            if run is None:
                raise ValueError(f"a needed word must begin with a-z, 0-9 or _: {word!r}")
            key = run.group().encode()
            if word == run.group() or self.phrases.get(key) == ():
                self.phrases[key] = ()
            else:
                self.phrases[key] = (*self.phrases.get(key, ()), word)
        if words is None and marks:
            raise ValueError("marks alone are never checked: give words=() with them")
        self.words = None if words is None else frozenset(self.phrases)
        self.marks = tuple(marks)
        if starts is not None:
            source = f"(?=[{starts}])(?:{source})"
        self.pattern = re.compile(source, flags | re.IGNORECASE)
        lowered = _lower_outside_escapes(source)
        self.lowered = re.compile(lowered, flags & ~re.IGNORECASE) if lowered is not None else None

    def absent(self, text: FoldedText) -> bool:
        """True when `text`'s runs are known and hold none of the words a match needs, nor the
        text any of the marks: then there is no match. False says only "maybe"."""
        runs, lowered = text.runs, text.lowered
        if runs is None or lowered is None or self.words is None or self.lowered is None:
            return False
        for run in self.words & runs:
            phrases = self.phrases[run]
            if not phrases or any(phrase in lowered for phrase in phrases):
                return False
        return not any(mark in lowered for mark in self.marks)

    def search(self, text: FoldedText) -> re.Match[str] | None:
        """The first match: in the lower-cased text when there is one (the same span)."""
        if text.lowered is not None and self.lowered is not None:
            return None if self.absent(text) else self.lowered.search(text.lowered)
        return self.pattern.search(text.text)

    def found(self, text: FoldedText) -> bool:
        return self.search(text) is not None

    def count(self, text: FoldedText) -> int:
        """How many matches `findall` gives."""
        if text.lowered is not None and self.lowered is not None:
            return 0 if self.absent(text) else len(self.lowered.findall(text.lowered))
        return len(self.pattern.findall(text.text))


def _lower_outside_escapes(source: str) -> str | None:
    """`source` with its ASCII letters lower-cased except the one after each backslash; None
    when it cannot be folded safely (module docstring)."""
    if not source.isascii() or "(?P" in source or _INLINE_FLAGS.search(source):
        return None
    out: list[str] = []
    in_class = False
    class_start = 0  # where the class's first member is
    i = 0
    while i < len(source):
        char = source[i]
        if char == "\\" and i + 1 < len(source):
            escaped = source[i + 1]
            if escaped in _CODE_ESCAPES:
                return None
            out.append(char + escaped)
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
            class_start = i + 2 if source.startswith("^", i + 1) else i + 1
        elif char == "]" and in_class and i != class_start:
            in_class = False
        elif in_class and char.isupper():
            return None
        elif in_class and char == "-" and i != class_start and source[i + 1 : i + 2] != "]":
            if not _plain_range(source, i):
                return None
        out.append(char.lower())
        i += 1
    return "".join(out)


def _plain_range(source: str, dash: int) -> bool:
    """Whether the class range around `source[dash]` is a-z-like or 0-9-like: lower-case
    letters or digits at both ends (a range such as `!-_` spans capitals and signs alike)."""
    low, high = source[dash - 1], source[dash + 1]
    if dash >= 2 and source[dash - 2] == "\\" or high == "\\":
        return False
    return (low.islower() and high.islower()) or (low.isdigit() and high.isdigit())
