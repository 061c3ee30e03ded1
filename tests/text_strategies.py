"""Hypothesis strategies for text that case-insensitive patterns are tested on."""

from __future__ import annotations

from hypothesis import strategies as st


def any_case(words: list[str]) -> st.SearchStrategy[str]:
    """One of `words`, each letter in upper or lower case at random."""
    return st.sampled_from(words).flatmap(
        lambda word: st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
            lambda upper: "".join(
                c.upper() if u else c.lower() for c, u in zip(word, upper, strict=True)
            )
        )
    )
