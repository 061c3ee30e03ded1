"""Task classifier: a table of asks, Cline-shaped requests, tool loops, whole-word keywords."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import RoutingConfig
from gateway.router.classifier import Classification, TaskClassifier, current_ask

KEYWORDS = RoutingConfig().complexity_keywords


CLASSIFIER = TaskClassifier(KEYWORDS, 1000)


def classify(messages: list[Any], classifier: TaskClassifier = CLASSIFIER) -> Classification:
    result = classifier.classify({"model": "glm", "messages": messages})
    assert result.reason.startswith("complex" if result.complex else "simple"), result.reason
    return result


def route(text: str) -> str:
    return "complex" if classify([{"role": "user", "content": text}]).complex else "simple"


SIMPLE = [
    "What is 2+2?",
    "hi",
    "What's the capital of France?",
    "Thanks, that works!",
    "What time zone is UTC+2?",
    "Translate 'good morning' into Spanish.",
    "How do I decode a base64 string in Python?",
    "How can I improve my sleep?",
    "Is a tomato a fruit? Answer yes or no.",
    "Rename the variable foo to bar.",
]


COMPLEX = [
    "Debug this stack trace: NullPointerException at Main.java:12",
    "This crashes:\nTraceback (most recent call last):\n  File \"a.py\", line 1\nKeyError: 'x'",
    "What does this print?\n```python\nprint(sum(range(10)))\n```",
    "Why won't it start?\n    at com.example.App.main(App.java:5)",
    "Refactor the parser",
    "Please OPTIMIZE this SQL query",
    "Write an algorithm for topological sort",
    "Design the architecture of a chat service",
    "Explain step by step why the sky is blue",
    "Explain why TCP needs a three-way handshake",
    "Why does my build take so long?",
    "Compare Postgres and SQLite trade-offs for a desktop app",
    "What are the pros and cons of microservices?",
    "Prove that the square root of 2 is irrational",
    "First install the package, then configure the proxy for it",
    "What is Rust? Who created it? When was 1.0 released?",
    "Build a todo app with:\n- adding items\n- deleting items\n- marking items as done",
    "Requirements:\n1. login page\n2. signup page\n3. password reset",
    "lorem ipsum dolor sit amet " * 200,
]


@pytest.mark.parametrize("text", SIMPLE)
def test_simple_asks(text: str) -> None:
    assert route(text) == "simple"


@pytest.mark.parametrize("text", COMPLEX)
def test_complex_asks(text: str) -> None:
    assert route(text) == "complex"


def test_reasons_name_the_signal() -> None:
    assert "keyword 'refactor'" in classify([{"role": "user", "content": "Refactor it"}]).reason
    assert "code" in classify([{"role": "user", "content": "```\nx\n```"}]).reason
    long = classify([{"role": "user", "content": "word " * 1000}])
    assert long.complex and "1000" in long.reason
    assert long.ask_tokens == 1250


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("How do I decode this?", "simple"),
        ("Scan the barcode", "simple"),
        ("Which codec is that?", "simple"),
        ("Read the code", "complex"),
        ("code", "complex"),
        ("Code: what is it?", "complex"),
        ("my (code) here", "complex"),
        ("The designated driver", "simple"),
        ("Can you approve it?", "simple"),
        ("Design it", "complex"),
    ],
)
def test_keywords_match_whole_words(text: str, expected: str) -> None:
    assert route(text) == expected


def test_configured_keywords_replace_the_defaults() -> None:
    classifier = TaskClassifier(["kubernetes", "Pull Request"], 1000)
    user = [{"role": "user", "content": "Set up KUBERNETES"}]
    assert classify(user, classifier).complex
    assert classify([{"role": "user", "content": "open a pull request"}], classifier).complex
    assert not classify([{"role": "user", "content": "read the code"}], classifier).complex


def test_no_keywords() -> None:
    classifier = TaskClassifier([], 1000)
    assert not classify([{"role": "user", "content": "refactor"}], classifier).complex


def test_keyword_ending_in_a_symbol() -> None:
    classifier = TaskClassifier(["c++"], 1000)
    assert classify([{"role": "user", "content": "Port it to C++ please"}], classifier).complex


def test_threshold_boundary() -> None:
    classifier = TaskClassifier([], 10)
    at = classify([{"role": "user", "content": "a" * 40}], classifier)  # 10 tokens
    over = classify([{"role": "user", "content": "a" * 41}], classifier)  # 11 tokens
    assert (at.complex, at.ask_tokens) == (False, 10)
    assert (over.complex, over.ask_tokens) == (True, 11)


SYSTEM_PROMPT = (
    "You are Cline, a highly skilled software engineer with extensive knowledge in many "
    "programming languages, frameworks, design patterns, and best practices.\n\n"
    "====\n\nTOOL USE\n\nYou can debug, refactor, implement, optimize and analyze code. "
    "Think step by step. Compare the trade-offs. Why does it fail? What is it? Who? When?\n"
    "- rule one\n- rule two\n- rule three\n"
    "```python\ndef example():\n    raise ValueError('x')\n```\n"
    "Traceback (most recent call last):\n"
) * 46


ENV_DETAILS = (
    "<environment_details>\n# VSCode Visible Files\nsrc/debug/code_analyzer.py\n\n"
    "# VSCode Open Tabs\nsrc/app.py\nsrc/refactor/parser.py\n\n"
    "# Current Time\n6/1/2026, 10:15:00 AM (Europe/Berlin, UTC+2:00)\n\n"
    "# Current Working Directory (/home/dev/project) Files\n"
    + "".join(f"- src/module_{i}/design_{i}.py\n" for i in range(200))
    + "\n# Context Window Usage\n12,345 / 131,072 tokens used (9%)\n\n"
    "# Current Mode\nACT MODE\n</environment_details>"
)


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": "Use this to debug, refactor and implement code. " * 5,
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string", "description": "a path"}},
                "required": ["path"],
            },
        },
    }
    for i in range(25)
]


def cline_task(ask: str, *, parts: bool = True) -> dict[str, Any]:
    task = f"<task>\n{ask}\n</task>"
    if parts:
        content: Any = [{"type": "text", "text": task}, {"type": "text", "text": ENV_DETAILS}]
    else:
        content = task + "\n\n" + ENV_DETAILS
    return {"role": "user", "content": content}


def cline_request(*turns: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": "glm",
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, *turns],
        "tools": TOOLS,
        "tool_choice": "auto",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_cline_fixture_sizes() -> None:
    assert len(SYSTEM_PROMPT) >= 20_000
    assert len(ENV_DETAILS) >= 5_000
    assert len(TOOLS) == 25
    # The system prompt and the environment alone would be complex: the test means something.
    assert route(SYSTEM_PROMPT) == "complex"
    assert route(ENV_DETAILS.replace("<environment_details>", "")) == "complex"


@pytest.mark.parametrize("parts", [True, False], ids=["parts", "string"])
def test_cline_simple_ask_is_simple(parts: bool) -> None:
    body = cline_request(cline_task("What time zone is UTC+2?", parts=parts))
    result = CLASSIFIER.classify(body)
    assert result.complex is False, result.reason
    assert result.ask_tokens == 6
    assert current_ask(body["messages"]) == "What time zone is UTC+2?"


@pytest.mark.parametrize("parts", [True, False], ids=["parts", "string"])
def test_cline_complex_ask_is_complex(parts: bool) -> None:
    body = cline_request(cline_task("Refactor the parser in src/parser.py", parts=parts))
    result = CLASSIFIER.classify(body)
    assert result.complex is True
    assert "refactor" in result.reason


def read_file_turns(path: str, file_text: str) -> list[dict[str, Any]]:
    call = f"<read_file>\n<path>{path}</path>\n</read_file>"
    result = [
        {"type": "text", "text": f"[read_file for '{path}'] Result:"},
        {"type": "text", "text": file_text},
        {"type": "text", "text": ENV_DETAILS},
    ]
    return [{"role": "assistant", "content": call}, {"role": "user", "content": result}]


APP_PY = (
    "import os\n\n\nclass App:\n    def run(self):\n        # debug and refactor this code\n"
    "        raise RuntimeError('boom')\n"
)


def test_tool_loop_is_classified_by_the_original_simple_task() -> None:
    body = cline_request(
        cline_task("What time zone is UTC+2?"),
        *read_file_turns("src/app.py", APP_PY),
        *read_file_turns("src/other.py", "```\nTraceback (most recent call last):\n```"),
    )
    result = CLASSIFIER.classify(body)
    assert result.complex is False, result.reason
    assert current_ask(body["messages"]) == "What time zone is UTC+2?"


def test_tool_loop_is_classified_by_the_original_complex_task() -> None:
    body = cline_request(
        cline_task("Refactor the parser"),
        *read_file_turns("src/app.py", "hello world"),
    )
    assert CLASSIFIER.classify(body).complex is True


def test_tool_result_as_a_single_string() -> None:
    body = cline_request(
        cline_task("hi", parts=False),
        {"role": "assistant", "content": "<read_file><path>a.py</path></read_file>"},
        {"role": "user", "content": f"[read_file for 'src/app.py'] Result:\n{APP_PY}"},
    )
    assert CLASSIFIER.classify(body).complex is False


def test_native_tool_calls_then_environment_only_turn() -> None:
    body = cline_request(
        cline_task("What time zone is UTC+2?"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": '{"path": "src/app.py"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": APP_PY},
        {"role": "user", "content": [{"type": "text", "text": ENV_DETAILS}]},
    )
    assert current_ask(body["messages"]) == "What time zone is UTC+2?"
    assert CLASSIFIER.classify(body).complex is False


@pytest.mark.parametrize(
    ("feedback", "expected"),
    [("What time is it in Berlin?", False), ("Now refactor it into two modules", True)],
)
def test_feedback_inside_a_tool_result_is_the_new_ask(feedback: str, expected: bool) -> None:
    result_text = (
        "[attempt_completion] Result:\n\nThe user has provided feedback on the results. "
        f"Consider their input to continue the task.\n<feedback>\n{feedback}\n</feedback>"
    )
    body = cline_request(
        cline_task("hi"),
        {"role": "assistant", "content": "<attempt_completion>done</attempt_completion>"},
        {"role": "user", "content": [{"type": "text", "text": result_text}]},
    )
    assert current_ask(body["messages"]) == feedback
    assert CLASSIFIER.classify(body).complex is expected


def test_followup_answer_is_the_new_ask() -> None:
    text = "[ask_followup_question for 'Which file?'] Result:\n<answer>\nthe first one\n</answer>"
    body = cline_request(
        cline_task("Refactor the parser"),
        {"role": "assistant", "content": "<ask_followup_question>Which file?"},
        {
            "role": "user",
            "content": [{"type": "text", "text": text}, {"type": "text", "text": ENV_DETAILS}],
        },
    )
    assert current_ask(body["messages"]) == "the first one"
    assert CLASSIFIER.classify(body).complex is False


def test_tool_result_for_a_path_with_brackets() -> None:
    page = "import React from 'react'\n\nexport default function Page() {\n  return null\n}\n"
    body = cline_request(
        cline_task("What time zone is UTC+2?"),
        *read_file_turns("app/blog/[slug]/page.tsx", page),
    )
    assert current_ask(body["messages"]) == "What time zone is UTC+2?"
    assert CLASSIFIER.classify(body).complex is False


def test_list_of_parts_content() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    simple = [image, {"type": "text", "text": "hi"}]
    complex_ = [{"type": "text", "text": "Refactor"}, image, {"type": "text", "text": "the parser"}]
    assert classify([{"role": "user", "content": simple}]).complex is False
    assert classify([{"role": "user", "content": complex_}]).complex is True
    assert current_ask([{"role": "user", "content": complex_}]) == "Refactor\nthe parser"


def test_only_the_last_user_ask_counts() -> None:
    messages = [
        {"role": "user", "content": "Refactor the parser"},
        {"role": "assistant", "content": "Here is the refactored code: ```python\n...```"},
        {"role": "user", "content": "thanks!"},
    ]
    assert classify(messages).complex is False
    assert classify(messages[:1]).complex is True


def test_assistant_and_system_text_is_ignored() -> None:
    messages = [
        {"role": "system", "content": "debug refactor ```code```"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Let me debug and refactor the code step by step."},
    ]
    assert classify(messages).complex is False


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "system", "content": "Refactor everything"}],
        [{"role": "user", "content": None}],
        [{"role": "user", "content": ""}],
        ["not a message", 3, None],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
    ],
)
def test_no_human_ask_is_simple(messages: list[Any]) -> None:
    result = classify(messages)
    assert result.complex is False
    assert result.ask_tokens == 0


def test_messages_not_a_list() -> None:
    assert CLASSIFIER.classify({"messages": "Refactor the parser"}).complex is False
    assert CLASSIFIER.classify({}).complex is False
