"""The replay data as router examples: features, label and offline cost of every turn.

Shared by scripts/train_router.py and scripts/bench_replay.py (--router). The split and the
loaders are bench_replay's own (GSM8K rows 0-659 and MT-Bench ids 81-120 are the tuning split).

Label ("the local answer is not good enough"):
- GSM8K: Mixtral's answer is wrong (its correctness flag is False);
- MT-Bench: Mixtral's judge score is at least `MT_BENCH_GAP` (2) points below GPT-4's on that
  turn; smaller gaps are within the judge's usual spread.

Offline cost of a turn: what the simulated Cerebras bills for answering it in full (the
simulators' rule: prompt = ceil(characters / 4) plus 4 per message over the messages as sent,
completion = one token per whitespace-delimited word of GPT-4's answer), at Cerebras prices.
The draft is what the verdict window would hold of Mixtral's answer: its first
`max_draft_tokens` estimated tokens (4 characters each).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench_replay import (
    INPUT_PER_MILLION,
    OUTPUT_PER_MILLION,
    Conversation,
    Turn,
    default_data_dir,
    load_gsm8k,
    load_mt_bench,
)

from gateway.accounting.tokens import CHARS_PER_TOKEN, estimate_prompt_tokens
from gateway.router import Router
from gateway.router.features import Features

MT_BENCH_GAP = 2.0
MAX_DRAFT_TOKENS = 100


@dataclass(frozen=True, slots=True)
class Example:
    turn: Turn
    ask: Features
    draft: Features  # ask and draft features together
    bad: bool
    cost: float


def label_of(turn: Turn) -> bool:
    if turn.dataset == "gsm8k":
        return turn.local_quality < 1.0
    return turn.cloud_quality - turn.local_quality >= MT_BENCH_GAP


def draft_window(text: str, limit: int = MAX_DRAFT_TOKENS) -> tuple[str, int, bool]:
    """(text in the window, its estimated tokens, whether it is the whole answer)."""
    chars = limit * CHARS_PER_TOKEN
    complete = len(text) <= chars
    window = text if complete else text[:chars]
    return window, -(-len(window) // CHARS_PER_TOKEN), complete


def examples(conversations: Sequence[Conversation], router: Router) -> list[Example]:
    out = []
    for conversation in conversations:
        messages: list[dict[str, str]] = []
        for turn in conversation:
            messages.append({"role": "user", "content": turn.prompt})
            body = {"messages": messages}
            prompt = estimate_prompt_tokens(body)
            completion = len(turn.cloud_answer.split())
            cost = (prompt * INPUT_PER_MILLION + completion * OUTPUT_PER_MILLION) / 1e6
            ask = router.ask_vector(body)
            text, tokens, complete = draft_window(turn.local_answer)
            draft = router.draft_vector(
                ask, text, tokens, complete=complete, ask_text=router.ask_text(body)
            )
            out.append(Example(turn, ask, draft, label_of(turn), cost))
            messages.append({"role": "assistant", "content": turn.cloud_answer})
    return out


def load_all(every: int = 1) -> list[Conversation]:
    data = default_data_dir()
    return load_mt_bench(data) + load_gsm8k(data, every)
