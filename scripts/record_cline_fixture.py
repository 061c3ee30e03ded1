"""Record what the real Cline CLI 3.0.65 sends after a broken or a good tool call.

    .venv/bin/python scripts/record_cline_fixture.py [--out tests/fixtures/cline_3.0.65.json]

Each scenario runs Cline once (tests/cline_support.py: sealed off, loopback only) against a
gateway (`always_local`) in front of the simulators. The local simulator answers turn by turn
from the scenario's list (the last answer repeats). The request bodies the gateway forwarded are
stored trimmed but faithful: messages exactly as sent except the system prompt (its first 600
characters, then a marker with its full length and sha256), tools as their names only.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from cline_support import CLINE_VERSION, find_cline, run_cline  # noqa: E402
from support import CEREBRAS_KEY, gateway_config  # noqa: E402

from gateway.dev.sim import SimOptions, SimServer, running_sim  # noqa: E402
from gateway.dev.sim.options import scripted_answer_from_json  # noqa: E402
from gateway.http.app import create_app  # noqa: E402

SYSTEM_KEEP = 600


def call(name: str, arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def scenarios(work: str) -> dict[str, tuple[str, list[dict[str, Any]], str]]:
    """name -> (prompt, local answers turn by turn, what the scenario shows)."""
    notes = f"{work}/notes.txt"
    return {
        "unknown_tool": (
            "say hello",
            [call("say_hello", {"text": "hello"})],
            "a call to a tool that does not exist, repeated until Cline gives up",
        ),
        "invalid_arguments": (
            "show me notes.txt",
            [call("read_files", {"file": "notes.txt"}), {"content": "Done."}],
            "a call to a real tool with arguments that do not fit its schema",
        ),
        "unparsable_arguments": (
            "list the files here",
            [call("run_commands", "commands: ls -la"), {"content": "Done."}],
            "a call whose arguments are not valid JSON",
        ),
        "good_tool_call": (
            "what does notes.txt say?",
            [call("read_files", {"files": [{"path": notes}]}), {"content": "It says hi."}],
            "a correct call and its result, then the answer (no failure signal)",
        ),
        "failed_command": (
            "run the tests",
            [call("run_commands", {"commands": ["exit 3"]}), {"content": "The tests failed."}],
            "a correct call whose command fails at run time (not the answer's fault)",
        ),
    }


async def _advance(sim: SimServer, answers: list[dict[str, Any]]) -> None:
    """Give the n-th request the n-th answer: switch the script once a request finished."""
    served = 0
    while True:
        done = sum(1 for r in sim.requests if r.ended_at is not None)
        if done != served:
            served = done
            answer = answers[min(served, len(answers) - 1)]
            sim.options.script = {"*": scripted_answer_from_json(answer)}
        await asyncio.sleep(0.005)


def trim(body: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in body.items() if k not in ("messages", "tools")}
    out["tools"] = [t.get("function", {}).get("name") for t in body.get("tools") or []]
    messages = []
    for message in body.get("messages") or []:
        if message.get("role") == "system" and isinstance(message.get("content"), str):
            text = message["content"]
            digest = hashlib.sha256(text.encode()).hexdigest()
            message = {
                **message,
                "content": text[:SYSTEM_KEEP]
                + f"\n[... system prompt trimmed: {len(text)} chars, sha256 {digest}]",
            }
        messages.append(message)
    out["messages"] = messages
    return out


async def record(cline: Path, name: str, prompt: str, answers: list[dict[str, Any]]) -> Any:
    with tempfile.TemporaryDirectory(prefix=f"cline-{name}-") as tmp:
        tmp_path = Path(tmp)
        work = tmp_path / "run" / "work"
        work.mkdir(parents=True)
        (work / "notes.txt").write_text("hi\n")
        answers = json.loads(json.dumps(answers).replace("/workspace", str(work)))
        first = scripted_answer_from_json(answers[0])
        async with (
            running_sim(SimOptions(profile="llamacpp", script={"*": first})) as local,
            running_sim(SimOptions(profile="cerebras", api_key=CEREBRAS_KEY)) as cerebras,
        ):
            cfg = gateway_config(tmp_path, local.url, cerebras.url, strategy="always_local")
            runner = web.AppRunner(create_app(cfg))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            advancing = asyncio.create_task(_advance(local, answers))
            try:
                run = await run_cline(
                    cline, f"http://127.0.0.1:{port}/v1", prompt, tmp_path / "run", timeout=90
                )
            finally:
                advancing.cancel()
                await runner.cleanup()
            bodies = [trim(r.body) for r in local.requests]
        text = json.dumps(bodies).replace(str(work), "/workspace")
        return {
            "cline_returncode": run.returncode,
            "blocked_requests": run.blocked,
            "requests": json.loads(text),
        }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/cline_3.0.65.json")
    args = parser.parse_args()
    cline, why = find_cline()
    if cline is None:
        print(f"cannot record: {why}", file=sys.stderr)
        return 1
    fixture: dict[str, Any] = {
        "cline_version": CLINE_VERSION,
        "how": "scripts/record_cline_fixture.py (gateway always_local on the simulators)",
        "scenarios": {},
    }
    for name, (prompt, answers, what) in scenarios("/workspace").items():
        print(f"recording {name} ...", file=sys.stderr)
        recorded = await record(cline, name, prompt, answers)
        fixture["scenarios"][name] = {
            "what": what,
            "prompt": prompt,
            "local_answers": answers,
            **recorded,
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, indent=1) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
