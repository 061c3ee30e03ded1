"""Features of an ask (and of a local draft) for the learned router, as sparse vectors.

A feature vector is a dict {index: value}. Indices below `HASH_SIZE` are hashed word n-grams
(1- and 2-grams, lower-cased); the dense features sit at fixed indices after them, named in
`ASK_DENSE` and `DRAFT_DENSE`. Hashing uses zlib.crc32, never Python's salted `hash()`, so an
index is the same in every process and in the shipped weights. The ask is
`gateway.router.classifier.current_ask`, the same text the heuristic classifier reads.
"""

from __future__ import annotations

import ast
import math
import re
import zlib
from collections.abc import Sequence
from fractions import Fraction

from gateway.accounting.tokens import estimate_text_tokens
from gateway.router.answer import final_number, logprob_confidence
from gateway.router.ascii_fold import FoldedPattern, FoldedText, folded
from gateway.router.classifier import _CODE, _LIST_ITEM, _REASONING, complex_content

HASH_BITS = 12
HASH_SIZE = 1 << HASH_BITS

ASK_DENSE: tuple[str, ...] = (
    "bias",
    "ask_log_tokens",
    "ask_empty",
    "ask_numbers",
    "ask_math",
    "ask_code",
    "ask_reasoning",
    "ask_questions",
    "ask_list_items",
    "ask_keywords",
    "ask_tokens_over_8",
    "ask_tokens_over_16",
    "ask_tokens_over_24",
    "ask_tokens_over_32",
    "ask_tokens_over_48",
    "ask_tokens_over_64",
    "ask_tokens_over_96",
    "ask_tokens_over_128",
    "ask_tokens_over_256",
    "ask_tokens_over_512",
    "ask_heuristic",
    "ask_sentences",
    "ask_number_count",
    "ask_decimals",
    "ask_percent",
    "ask_fraction",
    "ask_ratio",
    "ask_units",
    "ask_how_many",
    "ask_open_writing",
    "ask_roleplay",
    "ask_math_cue",
    "ask_code_cue",
    "ask_format_cue",
    "ask_followup",
)
DRAFT_DENSE: tuple[str, ...] = (
    "draft_log_tokens",
    "draft_complete",
    "draft_hedges",
    "draft_final_number",
    "draft_numbers",
    "draft_logprobs",
    "draft_prob_mean",
    "draft_prob_low",
    "draft_answer_line",
    "draft_calc_ok",
    "draft_calc_wrong",
    "draft_steps",
    "draft_final_in_steps",
    "draft_final_fraction",
    "draft_final_in_ask",
    "draft_repeats",
    "draft_relative_length",
    "draft_cut_mid_number",
)
DENSE: tuple[str, ...] = ASK_DENSE + DRAFT_DENSE
DIMENSION = HASH_SIZE + len(DENSE)
_INDEX = {name: HASH_SIZE + i for i, name in enumerate(DENSE)}
_LENGTH_STEPS = (8, 16, 24, 32, 48, 64, 96, 128, 256, 512)

Features = dict[int, float]

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_MATH = FoldedPattern(
    r"[=+*/^%<>]|\b(?:sum|total|percent|average|ratio|twice|half|each|per|how many|how much|"
    r"calculate|equation|probability|integral|derivative)\b",
    starts=r"=+*/^%<>stparhecid",
    words=(
        *"sum total percent average ratio twice half each per calculate".split(),
        *("how many", "how much"),
        *"equation probability integral derivative".split(),
    ),
    marks="=+*/^%<>",
)
# Hedges and refusals: a draft saying it does not know is no answer, however short it is.
_HEDGE = FoldedPattern(
    r"\bI(?:'m| am) not (?:sure|certain)\b|\bI (?:don't|do not) (?:know|have (?:enough|access))\b|"
    r"\bI (?:can't|cannot|can not|won't|am unable to|'m unable to|am not able to)\b|"
    r"\bI'm unable\b|\bas an AI\b|\bas a language model\b|\bI(?:'m| am) sorry\b|\bI apologi[sz]e\b|"
    r"\bnot enough information\b|\bunable to (?:answer|determine|help)\b",
    starts=r"ianu",
    words=("i", "as an ai", "as a language model", "not enough information", "unable to"),
)


def _straight_quotes(text: str) -> str:
    """`text` with typographic apostrophes made straight (str.replace: over a pasted file it is
    thousands of times faster than str.translate with a table)."""
    return text.replace("\u2019", "'").replace("\u2018", "'")


_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
_DECIMAL = re.compile(r"\d\.\d")
_PERCENT = FoldedPattern(
    r"%|\bpercent(?:age)?\b", starts=r"%p", words=("percent", "percentage"), marks="%"
)
_FRACTION = FoldedPattern(
    r"\b\d+/\d+\b|\b(?:half|halves|thirds?|quarters?|fifths?|fraction)\b",
    starts=r"\dhtqf",
    words="half halves third thirds quarter quarters fifth fifths fraction".split(),
    marks="/",
)
_RATIO = FoldedPattern(
    r"\b(?:ratio|times (?:as|more|less|longer|bigger)|twice|thrice|double|triple|as (?:many|much)|"
    r"(?:more|less|fewer) than)\b",
    starts=r"rtdamlf",
    words=(
        *("ratio", "twice", "thrice", "double", "triple", "as many", "as much"),
        *("times as", "times more", "times less", "times longer", "times bigger"),
        *("more than", "less than", "fewer than"),
    ),
)
_UNITS = FoldedPattern(
    r"\$|\b(?:dollars?|cents?|hours?|minutes?|seconds?|days?|weeks?|months?|years?|miles?|km|"
    r"meters?|feet|foot|inch(?:es)?|pounds?|kg|grams?|liters?|gallons?|mph)\b",
    starts=r"$dchmswykfipgl",
    words=(
        *"dollar dollars cent cents hour hours minute minutes second seconds day days".split(),
        *"week weeks month months year years mile miles km meter meters feet foot".split(),
        *"inch inches pound pounds kg gram grams liter liters gallon gallons mph".split(),
    ),
    marks="$",
)
_HOW_MANY = FoldedPattern(
    r"\bhow (?:many|much|long|far|old)\b",
    starts=r"h",
    words=("how many", "how much", "how long", "how far", "how old"),
)
_OPEN_WRITING = FoldedPattern(
    r"\b(?:write|compose|draft|essay|poem|story|blog|email|letter|rewrite|slogan|speech|"
    r"paragraph|describe|imagine)\b",
    starts=r"wcdepsblri",
    words=(
        *"write compose draft essay poem story blog email letter rewrite slogan".split(),
        *"speech paragraph describe imagine".split(),
    ),
)
_ROLEPLAY = FoldedPattern(
    r"\b(?:pretend|act as|role|persona|you are|as if you)\b",
    starts=r"pary",
    words=("pretend", "act as", "role", "persona", "you are", "as if you"),
)
_MATH_CUE = FoldedPattern(
    r"\b(?:solve|equation|probability|integer|prime|area|triangle|polynomial|derivative|"
    r"integral|sum of)\b|\^|\bf\(x\)",
    starts=r"sepiatd^f",
    words=(
        *"solve equation probability integer prime area triangle polynomial".split(),
        *("derivative", "integral", "sum of", "f(x)"),
    ),
    marks="^",
)
_CODE_CUE = FoldedPattern(
    r"\b(?:python|c\+\+|java(?:script)?|function|program|implement|algorithm|code|regex|sql|"
    r"html|array|bug)\b",
    starts=r"pcjfiarshb",
    words=(
        *"python c++ java javascript function program implement algorithm code regex".split(),
        *"sql html array bug".split(),
    ),
)
_FORMAT_CUE = FoldedPattern(
    r"\b(?:extract|json|yaml|csv|table|format|bullet|identify)\b",
    starts=r"ejyctfbi",
    words="extract json yaml csv table format bullet identify".split(),
)
_FOLLOWUP = FoldedPattern(
    r"\b(?:your (?:previous )?(?:answer|response|reply)|previous|above|now|again|instead|"
    r"same)\b",
    starts=r"ypanis",
    words=(
        *("your answer", "your response", "your reply", "your previous"),
        *("previous", "above", "now", "again", "instead", "same"),
    ),
)
# A stated final answer: "#### 18", "the answer is 18", "final answer: 18", "\boxed{18}".
_ANSWER_LINE = FoldedPattern(
    r"####\s*\S|\b(?:the )?(?:final )?answer (?:is|:)|\bfinal answer\b|\\boxed\{",
    starts=r"#tfa\\",
    words=("the final answer ", "the answer ", "final answer", "answer "),
    marks=("####", "\\boxed{"),
)
# "a op b = c" as written in a worked answer (also inside GSM8K's <<a*b=c>> annotations).
_EQUATION = re.compile(r"([\d$.,\s+\-*/x×÷()%\\]+?)=\s*\$?(-?\d[\d,]*(?:\.\d+)?(?:/\d+)?)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_OPERATOR_BETWEEN = re.compile(r"\d[\s)]*[+\-*/][\s(]*\d")
_ANSWER_END = ".!?)]}\"'`*:"


def stable_hash(text: str) -> int:
    """A bucket in 0..HASH_SIZE-1, the same in every process (crc32, not hash())."""
    return zlib.crc32(text.encode("utf-8")) & (HASH_SIZE - 1)


def hedges(text: str) -> bool:
    """True when `text` hedges or refuses ("I'm not sure", "I can't", "as an AI", ...)."""
    return _HEDGE.found(FoldedText.of(_straight_quotes(text)))


def _ngrams(text: str, prefix: str) -> Features:
    """Hashed 1- and 2-grams, each counted once, scaled so a vector's n-grams have norm 1.

    The same vector as hashing each distinct gram `prefix + w` and `prefix + a + " " + b` with
    `stable_hash`, without building the gram strings: crc32 runs on from the prefix's crc to a
    word's, and from a word's to the next one's (words hold no space, so distinct word pairs
    are distinct bigrams). Grams are taken in the order they first occur (`dict.fromkeys`, not
    a `set`, whose order follows the process's string hashing), so a vector's entries, and the
    sums over them, are the same to the last bit in every process."""
    words = _WORD.findall(_straight_quotes(text).lower())
    if not words:
        return {}
    crc32 = zlib.crc32
    start = crc32(prefix.encode("utf-8"))
    crcs: dict[str, int] = {}
    spaced: dict[str, bytes] = {}
    for word in dict.fromkeys(words):
        encoded = word.encode("utf-8")
        crcs[word] = crc32(encoded, start)
        spaced[word] = b" " + encoded
    mask = HASH_SIZE - 1
    out: Features = {}
    for crc in crcs.values():
        index = crc & mask
        out[index] = out.get(index, 0.0) + 1.0
    for first, second in dict.fromkeys(zip(words, words[1:], strict=False)):
        index = crc32(spaced[second], crcs[first]) & mask
        out[index] = out.get(index, 0.0) + 1.0
    scale = 1.0 / math.sqrt(sum(v * v for v in out.values()))
    return {i: v * scale for i, v in out.items()}


def _log_count(n: int) -> float:
    return math.log1p(n) / 3.0  # about 0..3 for counts up to a few thousand


def _evaluate(expression: str) -> Fraction | None:
    """The exact value of `expression` (+ - * / and brackets over numbers), None if it is not
    plain arithmetic."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return None

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return Fraction(str(node.value))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div) and right:
                return left / right
        raise ValueError("not arithmetic")

    try:
        return walk(tree)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def _number(text: str) -> Fraction | None:
    try:
        return Fraction(text.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def arithmetic_check(text: str) -> tuple[int, int, list[Fraction]]:
    """Recompute every "a op b = c" in `text`: (how many check out, how many do not, the
    results c of all of them). A calculator check: a worked answer's slips are often sums."""
    ok = wrong = 0
    results: list[Fraction] = []
    for match in _EQUATION.finditer(text):
        left = _THOUSANDS.sub("", match.group(1)).replace("$", "").replace("\\", "")
        left = re.sub(r"(?<=[\d)])\s*[x×]\s*(?=[\d(])", "*", left).replace("÷", "/")
        left = re.sub(r"(?<![\d.])(\d+(?:\.\d+)?)\s*%", r"(\1/100)", left)
        left = left.strip(" .,+-*/x×")
        while left.count("(") > left.count(")") and left.startswith("("):
            left = left[1:].strip(" .,+-*/x×")
        while left.count(")") > left.count("(") and not left.endswith(")"):  # "(a) b + c"
            left = left[left.index(")") + 1 :].strip(" .,+-*/")
        if not _OPERATOR_BETWEEN.search(left) or "," in left:
            continue
        value, result = _evaluate(left), _number(match.group(2))
        if value is None or result is None:
            continue
        results.append(result)
        if abs(value - result) <= Fraction(1, 100) * max(Fraction(1), abs(result)):
            ok += 1
        else:
            wrong += 1
    return ok, wrong, results


def ask_features(ask: str | FoldedText, keyword_hits: int = 0) -> Features:
    """Features of one ask; `keyword_hits`: how many configured complexity keywords it names."""
    text = folded(ask)
    ask = text.text
    features = _ngrams(ask, "a:")
    numbers = len(_NUMBER.findall(ask))
    code = _CODE.search(ask) is not None
    reasoning = _REASONING.found(text)
    questions = ask.count("?")
    list_items = len(_LIST_ITEM.findall(ask))
    # The heuristic classifier's length-free reasons for "complex" (a keyword, or one of its
    # content signals), from the facts read above rather than a second scan of the ask.
    heuristic = keyword_hits > 0 or complex_content(
        code=code, reasoning=reasoning, list_items=list_items, questions=questions
    )
    dense = {
        "bias": 1.0,
        "ask_log_tokens": _log_count(estimate_text_tokens(len(ask))),
        "ask_empty": float(not ask.strip()),
        "ask_numbers": _log_count(numbers),
        "ask_math": _log_count(_MATH.count(text)),
        "ask_code": float(code),
        "ask_reasoning": float(reasoning),
        "ask_questions": _log_count(questions),
        "ask_list_items": _log_count(list_items),
        "ask_keywords": _log_count(keyword_hits),
        "ask_heuristic": float(heuristic),
        "ask_sentences": _log_count(len(_SENTENCE_END.findall(ask))),
        "ask_number_count": min(numbers, 12) / 6.0,
        "ask_decimals": float(_DECIMAL.search(ask) is not None),
        "ask_percent": float(_PERCENT.found(text)),
        "ask_fraction": float(_FRACTION.found(text)),
        "ask_ratio": _log_count(_RATIO.count(text)),
        "ask_units": _log_count(_UNITS.count(text)),
        "ask_how_many": float(_HOW_MANY.found(text)),
        "ask_open_writing": float(_OPEN_WRITING.found(text)),
        "ask_roleplay": float(_ROLEPLAY.found(text)),
        "ask_math_cue": float(_MATH_CUE.found(text)),
        "ask_code_cue": float(_CODE_CUE.found(text)),
        "ask_format_cue": float(_FORMAT_CUE.found(text)),
        "ask_followup": float(_FOLLOWUP.found(text)),
    }
    # Length steps let a linear model learn any monotone effect of the ask's length.
    tokens = estimate_text_tokens(len(ask))
    for n in _LENGTH_STEPS:
        if tokens > n:
            dense[f"ask_tokens_over_{n}"] = 1.0
    features.update({_INDEX[k]: v for k, v in dense.items() if v})
    return features


def draft_features(
    text: str,
    tokens: int,
    *,
    complete: bool,
    logprobs: Sequence[float] = (),
    low_quantile: float = 0.1,
    ask: str = "",
) -> Features:
    """Features of a local draft: `text` as far as the verdict window holds it (`tokens` answer
    tokens), `complete` when the window holds the whole answer, llama.cpp logprobs if any;
    `ask` (the ask's text) relates the draft to its question."""
    features = _ngrams(text, "d:")
    ok, wrong, results = arithmetic_check(text)
    final = final_number(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    ask_numbers = {_number(n) for n in _NUMBER.findall(ask)}
    stripped = text.rstrip()
    answered = _ANSWER_LINE.found(FoldedText.of(text))
    dense = {
        "draft_log_tokens": _log_count(tokens),
        "draft_complete": float(complete),
        "draft_hedges": float(hedges(text)),
        "draft_final_number": float(final_number(text) is not None),
        "draft_numbers": _log_count(len(_NUMBER.findall(text))),
        "draft_answer_line": float(answered),
        "draft_calc_ok": _log_count(ok),
        "draft_calc_wrong": float(wrong > 0),
        "draft_steps": _log_count(len(lines)),
        "draft_final_in_steps": float(final is not None and final in results),
        "draft_final_fraction": float(final is not None and final.denominator != 1),
        "draft_final_in_ask": float(final is not None and final in ask_numbers),
        "draft_repeats": float(len(lines) >= 4 and len(set(lines)) < 0.75 * len(lines)),
        "draft_relative_length": max(
            -1.0, min(1.0, (math.log1p(tokens) - math.log1p(estimate_text_tokens(len(ask)))) / 3)
        )
        if ask
        else 0.0,
        "draft_cut_mid_number": float(
            complete and not answered and bool(stripped) and stripped[-1] not in _ANSWER_END
        ),
    }
    if logprobs:
        mean, low = logprob_confidence(logprobs, low_quantile)
        dense.update(draft_logprobs=1.0, draft_prob_mean=mean, draft_prob_low=low)
    features.update({_INDEX[k]: v for k, v in dense.items() if v})
    return features


def combine(*parts: Features) -> Features:
    """One vector from several (ask and draft n-grams live in different hash prefixes)."""
    out: Features = {}
    for part in parts:
        for index, value in part.items():
            out[index] = out.get(index, 0.0) + value
    return out
