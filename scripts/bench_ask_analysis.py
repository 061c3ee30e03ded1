"""In-process cost of the router's analysis of a new ask, with and without the run prefilter.

`AskAnalyses.analyse` (gateway/router/asks.py) folds the ask once with its runs, so a pattern
none of whose words the ask holds is not scanned (gateway/router/ascii_fold.py). The baseline is
the same analysis as it was written before: each part folds the ask on its own and every pattern
scans the text (text with caseless signs such as a typographic apostrophe takes the lower-cased
twins in both; before, it kept the patterns as written: compare with a `git archive` of that
tree for it). Both run in the same process, alternated, best of several repeats; the script
checks that both give the same analysis and prints each time and the ratio new / old. A third
column gives the analysis with every pattern as written over the text as it is, no twin and no
runs: what an ask with a letter beyond ASCII (an accent, a Chinese sentence) got before the twins
covered every script (a text with one of `ascii_fold.FOLDS_INTO_ASCII` still does).

    python scripts/bench_ask_analysis.py [--repeats 7] [--runs-from N]

`--runs-from` sets the length from which runs are gathered (`ascii_fold.RUNS_FROM`), to find
where they start to pay.
"""

from __future__ import annotations

import argparse
import json
import timeit
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench_floor import pasted_text

from gateway.config import parse_config
from gateway.router import ascii_fold
from gateway.router.ascii_fold import FoldedText
from gateway.router.asks import AskAnalyses, AskAnalysis, analysis_of
from gateway.router.classifier import TaskClassifier
from gateway.router.heuristic import HeuristicScore

ROUTELLM = Path(__file__).resolve().parents[1] / "bench" / "data" / "routellm"
ASK = "Rename the function load to read in src/io.py."
ASK_ZH = "\u8bf7\u628a src/io.py \u91cc\u7684 load \u51fd\u6570\u6539\u540d\u4e3a read\u3002"
ASK_FR = "Renomme la fonction load en read dans src/io.py, s'il te pla\u00eet."


def old_analyse(classifier: TaskClassifier, ask: str) -> AskAnalysis:
    """The analysis as before the prefilter: every part folds the ask and scans it itself."""
    return analysis_of(classifier, ask, ask)


def written_analyse(classifier: TaskClassifier, ask: str) -> AskAnalysis:
    """The analysis with every pattern as written over the ask as it is (no twin, no runs)."""
    return analysis_of(classifier, ask, FoldedText(ask, None))


def replay_texts() -> dict[str, str]:
    """GSM8K questions (the first ASCII one, and the first, with a typographic apostrophe), an
    MT-Bench question, and MT-Bench answers of median and top length."""
    gsm8k = [json.loads(line)["question"] for line in (ROUTELLM / "gsm8k_test.jsonl").open()]
    questions = json.loads((ROUTELLM / "mt_bench_questions.jsonl").read_text().splitlines()[0])
    answers = sorted(
        (
            value
            for line in (ROUTELLM / "mt_bench_judgements.jsonl").read_text().splitlines()
            if line.strip()
            for value in json.loads(line).values()
            if isinstance(value, str) and len(value) > 200
        ),
        key=len,
    )
    return {
        "gsm8k question, ASCII": next(q for q in gsm8k if q.isascii()),
        "gsm8k question, with \u2019": gsm8k[0],
        "mt-bench question": questions["turns"][0],
        "mt-bench answer, median": answers[len(answers) // 2],
        "mt-bench answer, longest": answers[-1],
    }


def best_of(repeats: int, number: int, *calls: Callable[[], object]) -> list[float]:
    """The best time of `number` calls of each, over `repeats` alternated rounds."""
    best = [float("inf")] * len(calls)
    for _ in range(repeats):
        for i, call in enumerate(calls):
            best[i] = min(best[i], timeit.timeit(call, number=number))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--runs-from", type=int, default=None)
    args = parser.parse_args()
    if args.runs_from is not None:
        ascii_fold.RUNS_FROM = args.runs_from
    routing = parse_config({}, env={}).routing
    classifier = TaskClassifier(routing.complexity_keywords, routing.simple_task_threshold)
    analyses = AskAnalyses(classifier, HeuristicScore(classifier))
    texts = {
        "10 KB paste": f"{ASK}\n\n{pasted_text(10_000)}",
        "10 KB paste, one \u2019": f"{ASK} It\u2019s this:\n\n{pasted_text(10_000)}",
        "2 KB paste": f"{ASK}\n\n{pasted_text(2_000)}",
        "400 B paste": f"{ASK}\n\n{pasted_text(400)}",
        "46-character ask": ASK,
        "10 KB paste, one \u00e9": f"{ASK} Caf\u00e9:\n\n{pasted_text(10_000)}",
        "10 KB paste, Chinese ask": f"{ASK_ZH}\n\n{pasted_text(10_000)}",
        "Chinese ask": ASK_ZH,
        "French ask": ASK_FR,
        **replay_texts(),
    }
    print(f"runs gathered from {ascii_fold.RUNS_FROM} characters; best of {args.repeats}")
    print(
        f"{'ask':28} {'chars':>6} {'old µs':>9} {'new µs':>9} {'new/old':>8} "
        f"{'written µs':>11} {'new/written':>12}"
    )
    for name, text in texts.items():
        old, new = old_analyse(classifier, text), analyses.analyse(text)
        written = written_analyse(classifier, text)
        assert (old.features, old.keyword, old.verdict) == (new.features, new.keyword, new.verdict)
        assert (written.features, written.keyword, written.verdict) == (
            new.features,
            new.keyword,
            new.verdict,
        )
        number = max(1, 100_000 // max(len(text), 100))
        best_old, best_new, best_written = best_of(
            args.repeats,
            number,
            partial(old_analyse, classifier, text),
            partial(analyses.analyse, text),
            partial(written_analyse, classifier, text),
        )
        old_us, new_us = best_old / number * 1e6, best_new / number * 1e6
        written_us = best_written / number * 1e6
        print(
            f"{name:28} {len(text):>6} {old_us:>9.1f} {new_us:>9.1f} {new_us / old_us:>8.3f} "
            f"{written_us:>11.1f} {new_us / written_us:>12.3f}"
        )


if __name__ == "__main__":
    main()
