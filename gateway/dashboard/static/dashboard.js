/* GLM Token Saver dashboard: polls the gateway's JSON endpoints every 2 s and renders them.
   The client key (when the gateway needs one) lives in sessionStorage and travels only as an
   Authorization header. Every value from the gateway is written with textContent, never HTML. */
(function () {
  "use strict";

  var POLL_MS = 2000;
  var KEY_STORE = "glm-token-saver.client-key";
  var PAGE_SIZE = 25;
  var BUCKET_WORDS = { "1h": "minute", "1d": "hour", "30d": "day" };
  var COLORS = { local: "#2f9e44", cerebras: "#e8590c", none: "#868e96", saved: "#2f9e44", spend: "#e8590c" };

  var state = {
    window: "1h",
    before: null,       // paging cursor of the requests table (null: newest page)
    timer: null,
    ticking: null,
    charts: { money: null, requests: null },
    chartWindow: null,
    raw: null,          // last history body, for the legend's raw counts
    busy: false,
    deadlines: []       // [element, epoch ms, prefix] of live countdowns
  };

  // ---------- small helpers ----------

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") { node.textContent = attrs[k]; }
        else if (k === "cls") { node.className = attrs[k]; }
        else if (k === "style") { Object.assign(node.style, attrs[k]); }
        else { node.setAttribute(k, attrs[k]); }
      });
    }
    (children || []).forEach(function (c) { if (c) { node.appendChild(c); } });
    return node;
  }

  function num(v) { return typeof v === "number" && isFinite(v); }

  function fmtInt(v) { return num(v) ? Math.round(v).toLocaleString("en-US") : "–"; }

  function fmtUsd(v) {
    if (!num(v)) { return "–"; }
    var a = Math.abs(v);
    var digits = a === 0 ? 2 : a >= 1 ? 2 : a >= 0.01 ? 4 : 6;
    return (v < 0 ? "−" : "") + "$" + a.toFixed(digits);
  }

  function fmtPct(v) { return num(v) ? v.toFixed(1) + "%" : "–"; }

  function share(part, whole) { return num(part) && num(whole) && whole > 0 ? part / whole * 100 : 0; }

  function fmtDuration(s) {
    if (!num(s)) { return "–"; }
    s = Math.max(0, Math.round(s));
    if (s >= 86400) { return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h"; }
    if (s >= 3600) { return Math.floor(s / 3600) + "h " + Math.floor(s % 3600 / 60) + "m"; }
    if (s >= 60) { return Math.floor(s / 60) + "m " + (s % 60) + "s"; }
    return s + "s";
  }

  function fmtMs(v) {
    if (!num(v)) { return "–"; }
    return v >= 1000 ? (v / 1000).toFixed(2) + " s" : Math.round(v) + " ms";
  }

  function fmtTime(epoch) {
    if (!num(epoch)) { return "–"; }
    var d = new Date(epoch * 1000);
    var today = new Date();
    var t = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return d.toDateString() === today.toDateString() ? t : d.toLocaleDateString() + " " + t;
  }

  function setKey(key, text, negative) {
    var nodes = document.querySelectorAll('[data-key="' + key + '"]');
    Array.prototype.forEach.call(nodes, function (n) {
      n.textContent = text;
      n.classList.toggle("negative", !!negative);
    });
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  // ---------- auth and fetching ----------

  function storedKey() {
    try { return window.sessionStorage.getItem(KEY_STORE) || ""; } catch (e) { return ""; }
  }

  function authRequired() { return document.body.getAttribute("data-auth") === "required"; }

  function AuthError() { this.name = "AuthError"; }

  function getJSON(path) {
    var headers = { Accept: "application/json" };
    var key = storedKey();
    if (key) { headers.Authorization = "Bearer " + key; }
    return fetch(path, { headers: headers, cache: "no-store", credentials: "omit" }).then(function (r) {
      if (r.status === 401) { throw new AuthError(); }
      return r.json().then(function (body) {
        if (!r.ok) {
          var msg = body && body.error && body.error.message ? body.error.message : "HTTP " + r.status;
          throw new Error(msg);
        }
        return body;
      });
    });
  }

  function showLogin(message) {
    stopPolling();
    $("main").hidden = true;
    $("login").hidden = false;
    $("forget").hidden = true;
    $("login-error").hidden = !message;
    $("login-error").textContent = message || "";
    setLive("idle", "waiting for a key");
    $("key").focus();
  }

  function showMain() {
    $("login").hidden = true;
    $("main").hidden = false;
    $("forget").hidden = !storedKey();
  }

  function setLive(stateName, text) {
    var live = $("live");
    live.setAttribute("data-state", stateName);
    live.textContent = text;
  }

  // ---------- rendering: headline ----------

  function renderHeadline(stats, summary) {
    var t = summary.today;
    setKey("today.requests", fmtInt(t.requests));
    setKey("today.requests_note", fmtInt(t.by_model.local) + " local · " + fmtInt(t.by_model.cerebras) +
      " Cerebras" + (t.by_model.none ? " · " + fmtInt(t.by_model.none) + " unanswered" : ""));
    setKey("today.cerebras_cost", fmtUsd(t.cerebras_cost_usd));
    var daily = summary.budget && summary.budget.daily;
    setKey("today.budget_note", daily ? fmtPct(daily.percent) + " of the " + fmtUsd(daily.limit_usd) +
      " daily budget" : "no daily budget set");
    setKey("today.saved", fmtUsd(t.cost_saved_usd), t.cost_saved_usd < 0);
    setKey("today.saved_note", t.cost_saved_usd < 0
      ? "negative: routing cost more than all-Cerebras would have"
      : "all-Cerebras would have cost " + fmtUsd(t.counterfactual_usd), t.cost_saved_usd < 0);
    setKey("today.local_share_requests", fmtPct(t.local_share_requests_percent));
    setKey("today.local_share_tokens", fmtPct(t.local_share_tokens_percent));

    var req = stats.requests || {}, tok = stats.tokens || {}, costs = stats.costs || {};
    var byModel = req.by_model || {}, tokModel = tok.by_model || {};
    var localTok = tokModel.local ? tokModel.local.total : 0;
    setKey("stats.requests", fmtInt(req.total));
    setKey("stats.cerebras_cost", fmtUsd(costs.cerebras_cost_usd));
    setKey("stats.saved", fmtUsd(costs.cost_saved_usd), costs.cost_saved_usd < 0);
    setKey("stats.local_share_requests", fmtPct(share(byModel.local, req.total)));
    setKey("stats.local_share_tokens", fmtPct(share(localTok, tok.total)));
    var spec = stats.speculative_decoding || {};
    setKey("stats.acceptance", spec.total_drafts
      ? fmtPct(spec.acceptance_rate_percent) + " of " + fmtInt(spec.total_drafts) : "– (no drafts)");
    var gw = stats.gateway || {};
    $("gw").textContent = (gw.strategy ? "strategy " + gw.strategy : "") +
      (gw.version ? " · v" + gw.version : "") + (stats.uptime ? " · up " + stats.uptime : "");
  }

  // ---------- rendering: charts ----------

  function chartWidth(node) { return Math.max(260, Math.floor(node.clientWidth || 600)); }

  function barPaths() {
    return uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 48] }) : undefined;
  }

  function usdAxis(u, vals) { return vals.map(function (v) { return fmtUsd(v); }); }

  function makeCharts() {
    var moneyNode = $("chart-money"), reqNode = $("chart-requests");
    clear(moneyNode); clear(reqNode);
    var range = function (u, min, max) {
      var lo = Math.min(0, num(min) ? min : 0), hi = Math.max(0, num(max) ? max : 0);
      if (hi - lo < 1e-6) { hi = lo + 0.01; }
      return [lo, hi * 1.05];
    };
    var legendUsd = function (u, v) { return num(v) ? fmtUsd(v) : "–"; };
    state.charts.money = new uPlot({
      width: chartWidth(moneyNode), height: 210,
      scales: { x: { time: true }, y: { range: range } },
      series: [
        {},
        { label: "Cerebras spend", stroke: COLORS.spend, fill: "rgba(232,89,12,0.55)", width: 1, value: legendUsd,
          paths: barPaths(), points: { show: false } },
        { label: "Saved vs all-Cerebras", stroke: COLORS.saved, width: 2, fill: "rgba(47,158,68,0.10)",
          value: legendUsd, points: { size: 4 } }
      ],
      axes: [{}, { values: usdAxis, size: 92 }]
    }, [[], [], []], moneyNode);

    var bars = barPaths();
    var rawValue = function (key) {
      return function (u, v, si, idx) {
        var raw = state.raw;
        if (idx == null || !raw || !raw.buckets[idx]) { return "–"; }
        return fmtInt(raw.buckets[idx].requests[key]);
      };
    };
    // Stacked bars: each series is drawn as the running total, tallest first.
    state.charts.requests = new uPlot({
      width: chartWidth(reqNode), height: 210,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, num(max) ? max : 0) * 1.1]; } } },
      series: [
        {},
        { label: "no answer", stroke: COLORS.none, fill: COLORS.none, paths: bars, points: { show: false }, value: rawValue("none") },
        { label: "Cerebras", stroke: COLORS.cerebras, fill: COLORS.cerebras, paths: bars, points: { show: false }, value: rawValue("cerebras") },
        { label: "local", stroke: COLORS.local, fill: COLORS.local, paths: bars, points: { show: false }, value: rawValue("local") }
      ],
      axes: [{}, { size: 50, values: function (u, vals) { return vals.map(function (v) { return Number.isInteger(v) ? fmtInt(v) : ""; }); } }]
    }, [[], [], [], []], reqNode);
    state.chartWindow = state.window;
  }

  function renderHistory(h) {
    if (typeof uPlot === "undefined") { return; }
    if (!state.charts.money || state.chartWindow !== h.window) {
      if (state.charts.money) { state.charts.money.destroy(); state.charts.requests.destroy(); }
      makeCharts();
    }
    state.raw = h;
    var xs = [], spend = [], saved = [], none = [], cer = [], loc = [];
    var nonEmpty = 0;
    h.buckets.forEach(function (b) {
      var r = b.requests;
      xs.push(b.t);
      spend.push(b.cerebras_cost_usd);
      saved.push(b.cost_saved_usd);
      loc.push(r.local);
      cer.push(r.local + r.cerebras);
      none.push(r.local + r.cerebras + r.none);
      if (r.total > 0) { nonEmpty += 1; }
    });
    state.charts.money.setData([xs, spend, saved]);
    state.charts.requests.setData([xs, none, cer, loc]);
    $("chart-money").setAttribute("data-buckets", String(xs.length));
    $("chart-requests").setAttribute("data-nonempty", String(nonEmpty));
    Array.prototype.forEach.call(document.querySelectorAll(".bucket"), function (n) {
      n.textContent = BUCKET_WORDS[h.window] || "bucket";
    });
  }

  function resizeCharts() {
    if (!state.charts.money) { return; }
    state.charts.money.setSize({ width: chartWidth($("chart-money")), height: 210 });
    state.charts.requests.setSize({ width: chartWidth($("chart-requests")), height: 210 });
  }

  // ---------- rendering: gauges ----------

  function gauge(title, sub, percent, cls, marks) {
    var track = el("div", { cls: "track" }, [
      el("div", { cls: "fill " + (cls || ""), style: { width: Math.max(0, Math.min(100, percent)) + "%" } })
    ]);
    (marks || []).forEach(function (m) {
      var left = Math.max(0, Math.min(100, m.at)) + "%";
      track.appendChild(el("div", { cls: "mark", style: { left: left }, title: m.label }));
      if (m.text) {
        track.appendChild(el("div", { cls: "mark-label" + (m.at >= 95 ? " end" : ""), style: { left: left }, text: m.text }));
      }
    });
    var subNode = el("span", { cls: "muted", text: sub });
    var node = el("div", { cls: "gauge" }, [
      el("div", { cls: "gauge-head" }, [el("span", { text: title }), subNode]), track
    ]);
    return { node: node, sub: subNode };
  }

  function countdown(node, seconds, prefix) {
    state.deadlines.push([node, Date.now() + seconds * 1000, prefix]);
    node.textContent = prefix + fmtDuration(seconds);
  }

  function tick() {
    var now = Date.now();
    state.deadlines.forEach(function (d) {
      if (d[0].isConnected) { d[0].textContent = d[2] + fmtDuration((d[1] - now) / 1000); }
    });
  }

  function renderLimits(rl) {
    var box = $("limits");
    clear(box);
    state.deadlines = state.deadlines.filter(function (d) { return d[0].isConnected && !box.contains(d[0]); });
    if (!rl.windows.length) {
      box.appendChild(el("p", { cls: "muted", text: "No window known yet: Cerebras reports its limits with its first answer (set rate_limits.cerebras for your plan)." }));
    }
    rl.windows.forEach(function (w) {
      var pct = num(w.headroom) ? w.headroom * 100 : 0;
      var cls = pct < rl.threshold * 100 ? "bad" : pct < 50 ? "warn" : "";
      var left = fmtInt(w.remaining) + " of " + fmtInt(w.limit) + " " + (w.unit || "") + " left (" + fmtPct(pct) + ")";
      var g = gauge(w.name + (w.source === "plan" ? " (plan)" : ""), left, pct, cls,
        [{ at: rl.threshold * 100, label: "admission threshold", text: "" }]);
      var resets = el("span", { cls: "muted" });
      if (num(w.reset_in_s)) { countdown(resets, w.reset_in_s, "resets in "); }
      else { resets.textContent = w.source === "plan" ? "sliding window" : "reset unknown"; }
      g.node.appendChild(resets);
      box.appendChild(g.node);
    });
    if (rl.cool_down_remaining_s > 0) {
      var cd = el("p", { cls: "bad" });
      countdown(cd, rl.cool_down_remaining_s, "Cooling down after a 429: no Cerebras call for ");
      box.appendChild(cd);
    }
    var a = rl.adaptive || {};
    var text = "Adaptive state: " + (a.state || "–") + (a.reason ? " (" + a.reason + ")" : "") +
      "; " + fmtInt(a.switches) + " switch(es); threshold " + fmtPct(rl.threshold * 100) + " headroom.";
    var p = $("adaptive");
    clear(p);
    p.appendChild(document.createTextNode(text));
    if (a.state === "local" && a.cool_down_remaining_s > 0) {
      var s = el("span", { cls: "bad" });
      countdown(s, a.cool_down_remaining_s, " Back to Cerebras in ≥ ");
      p.appendChild(s);
    }
  }

  function renderBudget(b) {
    var box = $("budget");
    clear(box);
    var periods = ["daily", "monthly"].filter(function (k) { return b[k]; });
    if (!periods.length) {
      box.appendChild(el("p", { cls: "muted", text: "No budget configured (budget.daily_usd, budget.monthly_usd): Cerebras spend is not capped." }));
      return;
    }
    periods.forEach(function (k) {
      var p = b[k];
      var cls = p.exhausted ? "bad" : p.percent >= 80 ? "warn" : "";
      var marks = (b.alert_percents || []).map(function (a) { return { at: a, label: a + "% alert", text: a + "%" }; });
      var g = gauge(k + " budget", fmtUsd(p.spent_usd) + " of " + fmtUsd(p.limit_usd) + " (" + fmtPct(p.percent) + ")", p.percent, cls, marks);
      g.node.classList.add("budget");
      var renew = el("span", { cls: "muted" });
      countdown(renew, p.renews_in_s, p.exhausted ? "exhausted; renews in " : "renews in ");
      g.sub.appendChild(document.createTextNode(" · "));
      g.sub.appendChild(renew);
      box.appendChild(g.node);
    });
    box.appendChild(el("p", { cls: b.state === "exhausted" ? "bad" : "muted",
      text: "State: " + b.state + "; on exhaustion: " + b.on_exhausted + "; " + fmtInt(b.refused_calls) + " Cerebras call(s) refused." }));
  }

  // ---------- rendering: routing ----------

  function renderBars(node, counts) {
    clear(node);
    var keys = Object.keys(counts || {});
    if (!keys.length) { node.appendChild(el("p", { cls: "muted", text: "no requests today" })); return; }
    var max = Math.max.apply(null, keys.map(function (k) { return counts[k]; }));
    keys.slice(0, 12).forEach(function (k) {
      node.appendChild(el("div", { cls: "row" }, [
        el("div", {}, [el("div", { cls: "name", text: k, title: k }),
          el("div", { cls: "bar", style: { width: share(counts[k], max) + "%" } })]),
        el("div", { cls: "count", text: fmtInt(counts[k]) })
      ]));
    });
  }

  function renderRouting(stats, summary) {
    var r = summary.routing;
    renderBars($("by-strategy"), r.by_strategy);
    renderBars($("by-reason"), r.by_reason_kind);
    var spec = stats.speculative_decoding || {};
    $("drafts").textContent = "Drafts today: " + fmtInt(r.drafts_accepted) + " of " + fmtInt(r.drafts) +
      " accepted (" + fmtPct(r.acceptance_rate_percent) + "). Since reset: " +
      fmtInt(spec.drafts_accepted) + " of " + fmtInt(spec.total_drafts) + ", " +
      fmtInt(spec.tokens_saved) + " Cerebras tokens saved. Fallbacks today: " + fmtInt(summary.today.fallbacks) + ".";
    var card = $("router-card");
    if (stats.router && typeof stats.router === "object") {
      card.hidden = false;
      var dl = $("router");
      clear(dl);
      flatten(stats.router, "").slice(0, 40).forEach(function (kv) {
        dl.appendChild(el("dt", { text: kv[0] }));
        dl.appendChild(el("dd", { text: kv[1] }));
      });
    } else {
      card.hidden = true;
    }
  }

  function flatten(obj, prefix) {
    var out = [];
    Object.keys(obj).forEach(function (k) {
      var v = obj[k], name = prefix ? prefix + "." + k : k;
      if (v && typeof v === "object" && !Array.isArray(v)) { out = out.concat(flatten(v, name)); }
      else if (Array.isArray(v)) { out.push([name, v.map(function (x) { return typeof x === "object" ? JSON.stringify(x) : String(x); }).join(", ") || "–"]); }
      else if (typeof v === "number") { out.push([name, Number.isInteger(v) ? fmtInt(v) : (num(v) ? String(Math.round(v * 10000) / 10000) : "–")]); }
      else { out.push([name, v === null || v === undefined ? "–" : String(v)]); }
    });
    return out;
  }

  // ---------- rendering: requests ----------

  function cell(label, text, cls) { return el("td", { "data-label": label, text: text, cls: cls || "" }); }

  function renderRequests(page) {
    var body = $("requests").querySelector("tbody");
    clear(body);
    if (!page.data.length) {
      var td = el("td", { colspan: "8", cls: "muted", text: "No requests match." });
      body.appendChild(el("tr", {}, [td]));
    }
    page.data.forEach(function (r) {
      var up = r.model_used || "none";
      var link = el("a", { href: "#request/" + r.id, text: fmtTime(r.started_at), title: "full ledger row " + r.id });
      var timeCell = el("td", { "data-label": "Time", cls: "time" }, [link]);
      var upCell = el("td", { "data-label": "Upstream" }, [el("span", { cls: "up " + up, text: r.model_used || "no answer" })]);
      var cost = fmtUsd(r.cost_usd) + (r.cost_saved_usd < 0 ? " · saved " + fmtUsd(r.cost_saved_usd) : "");
      var tokens = fmtInt(r.tokens.total) + (r.tokens.local && r.tokens.cerebras ? " (" + fmtInt(r.tokens.local) + " local)" : "");
      body.appendChild(el("tr", { "data-id": String(r.id) }, [
        timeCell,
        cell("Strategy", r.strategy),
        upCell,
        cell("Tokens", tokens, "num"),
        cell("Cost", cost, "num"),
        cell("Latency", fmtMs(r.duration_ms) + (num(r.ttft_ms) ? " · TTFT " + fmtMs(r.ttft_ms) : ""), "num"),
        cell("Outcome", r.outcome + (r.fallback ? " · fallback" : ""), "outcome-" + r.outcome),
        cell("Routing reason", r.routing_reason || "–", "reason")
      ]));
    });
    $("older").hidden = !page.has_more;
    $("older").setAttribute("data-before", page.next_before === null ? "" : String(page.next_before));
    $("newer").hidden = state.before === null;
    $("requests-note").textContent = state.before === null ? "newest first, updating live" : "older page (not updating)";
  }

  function requestsPath() {
    var q = ["limit=" + PAGE_SIZE];
    var up = $("f-upstream").value, out = $("f-outcome").value;
    if (up) { q.push("upstream=" + encodeURIComponent(up)); }
    if (out) { q.push("outcome=" + encodeURIComponent(out)); }
    if (state.before !== null) { q.push("before=" + state.before); }
    return "/requests?" + q.join("&");
  }

  function loadRequests() {
    return getJSON(requestsPath()).then(renderRequests);
  }

  function showDetail(id) {
    getJSON("/requests/" + encodeURIComponent(id)).then(function (row) {
      $("detail").hidden = false;
      $("detail-title").textContent = "Request " + row.request_id + " (ledger row " + row.id + ")";
      var body = $("detail-calls").querySelector("tbody");
      clear(body);
      (row.calls || []).forEach(function (c, i) {
        body.appendChild(el("tr", {}, [
          cell("#", String(i + 1)), cell("Upstream", c.upstream), cell("Role", c.role),
          cell("Status", c.status), cell("Prompt", fmtInt(c.prompt_tokens), "num"),
          cell("Completion", fmtInt(c.completion_tokens) + (c.estimated ? "~" : ""), "num"),
          cell("Reasoning", fmtInt(c.reasoning_tokens || 0), "num"),
          cell("HTTP", c.http_status === null || c.http_status === undefined ? "–" : String(c.http_status)),
          cell("Error", c.error || "–")
        ]));
      });
      $("detail-json").textContent = JSON.stringify(row, null, 2);
      $("detail").scrollIntoView({ block: "nearest" });
    }).catch(handleError);
  }

  function onHash() {
    var m = /^#request\/(.+)$/.exec(window.location.hash);
    if (m) { showDetail(decodeURIComponent(m[1])); } else { $("detail").hidden = true; }
  }

  // ---------- polling ----------

  function handleError(err) {
    if (err instanceof AuthError) {
      var had = storedKey();
      try { window.sessionStorage.removeItem(KEY_STORE); } catch (e) { /* storage unavailable */ }
      showLogin(had ? "That key was not accepted." : "This gateway needs a client key.");
      return;
    }
    setLive("error", "offline: " + (err && err.message ? err.message : String(err)));
  }

  function refresh() {
    if (state.busy) { return Promise.resolve(); }
    state.busy = true;
    return Promise.all([
      getJSON("/stats"),
      getJSON("/dashboard/summary"),
      getJSON("/stats/history?window=" + encodeURIComponent(state.window))
    ]).then(function (parts) {
      var stats = parts[0], summary = parts[1];
      showMain();
      renderHeadline(stats, summary);
      renderHistory(parts[2]);
      renderLimits(summary.rate_limits);
      renderBudget(summary.budget);
      renderRouting(stats, summary);
      return state.before === null ? loadRequests() : null;
    }).then(function () {
      setLive("ok", "live · updated " + new Date().toLocaleTimeString());
      document.body.setAttribute("data-loaded", String(Date.now()));
    }).catch(handleError).then(function () { state.busy = false; });
  }

  function startPolling() {
    stopPolling();
    refresh();
    state.timer = window.setInterval(refresh, POLL_MS);
  }

  function stopPolling() {
    if (state.timer !== null) { window.clearInterval(state.timer); state.timer = null; }
  }

  // ---------- wiring ----------

  function init() {
    $("login-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var key = $("key").value.trim();
      if (!key) { return; }
      try { window.sessionStorage.setItem(KEY_STORE, key); } catch (e) { /* storage unavailable */ }
      $("key").value = "";
      startPolling();
    });
    $("forget").addEventListener("click", function () {
      try { window.sessionStorage.removeItem(KEY_STORE); } catch (e) { /* storage unavailable */ }
      showLogin("");
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-window]"), function (b) {
      b.addEventListener("click", function () {
        state.window = b.getAttribute("data-window");
        Array.prototype.forEach.call(document.querySelectorAll("[data-window]"), function (o) {
          o.setAttribute("aria-pressed", String(o === b));
        });
        refresh();
      });
    });
    ["f-upstream", "f-outcome"].forEach(function (id) {
      $(id).addEventListener("change", function () { state.before = null; loadRequests().catch(handleError); });
    });
    $("older").addEventListener("click", function () {
      var b = $("older").getAttribute("data-before");
      if (b) { state.before = parseInt(b, 10); loadRequests().catch(handleError); }
    });
    $("newer").addEventListener("click", function () { state.before = null; loadRequests().catch(handleError); });
    $("detail-close").addEventListener("click", function (ev) {
      ev.preventDefault();
      history.replaceState(null, "", window.location.pathname);
      $("detail").hidden = true;
    });
    window.addEventListener("hashchange", onHash);
    var resizeTimer = null;
    window.addEventListener("resize", function () {
      window.clearTimeout(resizeTimer);
      resizeTimer = window.setTimeout(resizeCharts, 100);
    });
    state.ticking = window.setInterval(tick, 1000);
    if (authRequired() && !storedKey()) { showLogin(""); return; }
    startPolling();
    onHash();
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); }
  else { init(); }
}());
