"""/dashboard in a real headless chromium (DevTools protocol): after known traffic through a
gateway on the simulators, the numbers on the page equal /stats, both charts draw their series,
the console stays clean, nothing reads NaN or undefined, and a narrow window does not overflow.

Skips, saying why, when chromium cannot be had (scripts/setup_browser.sh installs Debian's);
GLM_REQUIRE_BROWSER=1 makes that a failure. GLM_UPDATE_SCREENSHOT=1 also writes the README's
screenshot, docs/img/dashboard.png.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cdp import Browser, Page, find_chromium
from paths import REPO_ROOT as ROOT
from support import CEREBRAS_KEY, chat, post_stream

CLIENT_KEY = "browser-client-key-93be41"


AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}


WIDE, NARROW = 1366, 420


def _unavailable(reason: str) -> None:
    if os.environ.get("GLM_REQUIRE_BROWSER") == "1":
        pytest.fail(f"GLM_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    binary, why = find_chromium()
    if binary is None:
        _unavailable(why)
    assert binary is not None
    try:
        browser = await Browser.launch(binary, tmp_path / "chromium-profile")
    except (RuntimeError, OSError) as exc:
        _unavailable(f"chromium ({binary}) cannot start: {exc}")
    try:
        tab = await browser.page()
        await tab.viewport(WIDE, 900)
        yield tab
        if tab.reader is not None:
            tab.reader.cancel()
    finally:
        await browser.close()


KNOWN_TRAFFIC = [
    ("always_local", "What is 2+2?"),
    ("always_local", "Rename x to count."),
    ("always_cerebras", "Explain TCP and UDP."),
    ("smart_routing", "What is 2+2?"),
    ("smart_routing", "Explain the difference between TCP and UDP, with trade-offs"),
    ("speculative_decoding", "Write a binary search in Python."),
    ("always_local", "Summarise a mutex."),
]


def _number(text: str) -> tuple[float, float]:
    """A displayed number and the rounding it was shown with: '−$0.0012' -> (-0.0012, 5e-5)."""
    clean = text.replace("−", "-").replace("$", "").replace(",", "").replace("%", "").strip()
    match = re.fullmatch(r"-?\d+(?:\.(\d+))?", clean)
    assert match, f"not a number: {text!r}"
    decimals = len(match.group(1) or "")
    return float(clean), 0.5 * 10**-decimals + 1e-9


def _expected(stats: dict[str, Any]) -> dict[str, float]:
    requests, tokens, costs = stats["requests"], stats["tokens"], stats["costs"]
    numbers = {
        "requests": requests["total"],
        "cerebras_cost": costs["cerebras_cost_usd"],
        "saved": costs["cost_saved_usd"],
        "local_share_requests": requests["by_model"]["local"] / requests["total"] * 100,
        "local_share_tokens": tokens["by_model"]["local"]["total"] / tokens["total"] * 100,
    }
    # All the traffic is from today and nothing was reset: today's tiles equal /stats too.
    return {f"{row}.{k}": v for row in ("today", "stats") for k, v in numbers.items()}


SERIES_PIXELS = """
(() => {
  const colors = {local: [47, 158, 68], cerebras: [232, 89, 12]};
  const out = {};
  for (const id of ['chart-money', 'chart-requests']) {
    const canvas = document.querySelector('#' + id + ' canvas');
    if (!canvas || !canvas.width || !canvas.height) { out[id] = null; continue; }
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const counts = {local: 0, cerebras: 0, drawn: 0};
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] === 0) continue;
      counts.drawn++;
      for (const [name, c] of Object.entries(colors)) {
        const d = Math.abs(data[i] - c[0]) + Math.abs(data[i + 1] - c[1])
          + Math.abs(data[i + 2] - c[2]);
        if (d < 60) counts[name]++;
      }
    }
    out[id] = counts;
  }
  return out;
})()
"""


WIDER_THAN_VIEWPORT = """
[...document.querySelectorAll('body *')]
  .filter(n => n.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .slice(0, 8).map(n => n.tagName + '#' + n.id + '.' + n.className + ' '
    + Math.round(n.getBoundingClientRect().right))
"""


async def test_dashboard_in_a_real_browser(make_gateway, client, page: Page, tmp_path) -> None:
    gw = await make_gateway(
        "smart_routing",
        auth={"api_keys": [CLIENT_KEY]},
        budget={"daily_usd": 0.002, "monthly_usd": 0.05},
        rate_limits={"cerebras": {"requests_per_minute": 30, "tokens_per_minute": 60000}},
    )
    for strategy, prompt in KNOWN_TRAFFIC:
        reply = await post_stream(
            client, gw.url, chat(prompt, stream=True, model=strategy), headers=AUTH
        )
        assert reply.status == 200
    async with client.get(gw.root + "/stats", headers=AUTH) as resp:
        stats = await resp.json()
    assert stats["requests"]["total"] == len(KNOWN_TRAFFIC)

    # The key is asked for on the page, kept in sessionStorage, never put in a URL.
    await page.send("Page.navigate", {"url": gw.root + "/dashboard"})
    await page.wait_for("!document.getElementById('login').hidden")
    await page.eval(
        f"document.getElementById('key').value = {CLIENT_KEY!r};"
        "document.getElementById('login-form').requestSubmit(); true"
    )
    await page.wait_for("document.body.dataset.loaded")
    await page.wait_for("document.querySelectorAll('#requests tbody tr[data-id]').length > 0")
    assert CLIENT_KEY not in await page.eval("location.href")
    assert await page.eval("sessionStorage.getItem('glm-token-saver.client-key')") == CLIENT_KEY

    shown = await page.eval(
        "Object.fromEntries([...document.querySelectorAll('[data-key]')]"
        ".map(n => [n.dataset.key, n.textContent]))"
    )
    for key, value in _expected(stats).items():
        number, tolerance = _number(shown[key])
        assert number == pytest.approx(value, abs=tolerance), (key, shown[key], value)

    assert await page.eval("document.getElementById('chart-money').dataset.buckets") == "60"
    pixels = await page.eval(SERIES_PIXELS)
    assert pixels["chart-requests"]["local"] > 20, pixels
    assert pixels["chart-requests"]["cerebras"] > 20, pixels
    assert pixels["chart-money"]["cerebras"] > 20, pixels

    rows = await page.eval("document.querySelectorAll('#requests tbody tr[data-id]').length")
    assert rows == len(KNOWN_TRAFFIC)
    gauges = await page.eval("document.querySelectorAll('#limits .gauge').length")
    assert gauges >= 2, "one gauge per Cerebras window (the plan's at least)"
    marks = await page.eval("document.querySelectorAll('#budget .mark').length")
    assert marks == 6, "50/80/100 % marks on the daily and the monthly budget"
    assert await page.eval("document.querySelectorAll('#by-reason .row').length") >= 2

    # Filters, and one request's full ledger row with every upstream call.
    await page.eval(
        "const f = document.getElementById('f-upstream'); f.value = 'local';"
        "f.dispatchEvent(new Event('change')); true"
    )
    await page.wait_for(
        "[...document.querySelectorAll('#requests tbody .up')]"
        ".every(n => n.textContent === 'local')"
        " && document.querySelectorAll('#requests tbody tr[data-id]').length > 0"
    )
    await page.eval("document.querySelector('#requests tbody a').click(); true")
    await page.wait_for("document.querySelectorAll('#detail-calls tbody tr').length > 0")
    await page.eval(
        "const g = document.getElementById('f-upstream'); g.value = '';"
        "g.dispatchEvent(new Event('change'));"
        "document.getElementById('detail-close').click(); true"
    )
    await page.wait_for(
        f"document.querySelectorAll('#requests tbody tr[data-id]').length === {len(KNOWN_TRAFFIC)}"
    )

    text = await page.eval("document.body.innerText")
    for bad in ("NaN", "undefined", "Infinity", "[object Object]"):
        assert bad not in text, bad
    assert CEREBRAS_KEY not in text and CLIENT_KEY not in text

    wide = tmp_path / "dashboard.png"
    await page.screenshot(wide, WIDE)
    await page.viewport(NARROW, 900)
    await page.wait_for(f"document.documentElement.clientWidth <= {NARROW}")
    try:  # the charts follow a resize after a short debounce
        await page.wait_for(f"document.documentElement.scrollWidth <= {NARROW + 1}", timeout=5)
    except TimeoutError:
        wide_nodes = await page.eval(WIDER_THAN_VIEWPORT)
        pytest.fail(f"the page scrolls sideways at {NARROW}px: {wide_nodes}")
    await page.screenshot(tmp_path / "dashboard-narrow-top.png", NARROW, 900)
    await page.screenshot(tmp_path / "dashboard-narrow.png", NARROW)
    if os.environ.get("GLM_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(wide, ROOT / "docs" / "img" / "dashboard.png")

    assert page.errors == [], page.errors
