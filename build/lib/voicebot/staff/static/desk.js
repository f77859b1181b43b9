// The transfer desk: plain DOM code, no framework, no build step, no CDN.
// Everything shown comes from the staff API; text goes in via textContent only.
"use strict";

const $ = (id) => document.getElementById(id);
const ROLES = ["agent", "supervisor", "admin"];
const REASONS = {
  caller_request: "Caller asked for a person",
  low_confidence: "Bot could not understand",
  no_input: "Caller went quiet",
  unresolved: "Bot could not help",
  system_error: "Technical problem",
  over_capacity: "Bot was at capacity",
  max_duration: "Call reached the time limit",
  media_timeout: "Caller's audio stopped",
  shutdown: "Bot was shutting down",
  opted_out: "Caller opted out of the bot",
};
const QUEUE_STATUS = {
  waiting: "waiting",
  claimed: "claimed by you",
  callback: "call back: no one answered the transfer",
};
const state = { me: null, queue: new Map(), current: null, feed: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options };
  if (options.body !== undefined) {
    init.method = init.method || "POST";
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(path, init);
  if (response.status === 401 && path !== "/api/staff/login") showLogin();
  const data = response.headers.get("Content-Type")?.includes("json") ? await response.json() : {};
  return { ok: response.ok, status: response.status, data };
}

// --- log-in -------------------------------------------------------------------
function showLogin() {
  state.me = null;
  if (state.feed) state.feed.close();
  $("login-view").hidden = false;
  $("desk-view").hidden = true;
  $("logout").hidden = true;
  $("whoami").textContent = "";
  setFeed(false);
}

async function start() {
  const me = await api("/api/staff/me");
  if (!me.ok) return showLogin();
  state.me = me.data;
  $("login-view").hidden = true;
  $("desk-view").hidden = false;
  $("logout").hidden = false;
  $("whoami").textContent = `${me.data.name} (${me.data.role})`;
  const supervisor = ROLES.indexOf(me.data.role) >= 1;
  $("supervisor-button").hidden = !supervisor;
  connectFeed();
  await loadQueue();
  if (supervisor) loadSupervisor();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("login-error").textContent = "";
  const body = { name: $("login-name").value, password: $("login-password").value };
  const result = await api("/api/staff/login", { body });
  if (!result.ok) {
    $("login-error").textContent = result.status === 429 ? `Please wait: ${result.data.error}.`
      : "Wrong name or password.";
    return;
  }
  $("login-password").value = "";
  start();
});

$("logout").addEventListener("click", async () => {
  await api("/api/staff/logout", { body: {} });
  showLogin();
});

// --- live queue -----------------------------------------------------------------
function setFeed(on) {
  $("feed-state").textContent = on ? "live" : "offline";
  $("feed-state").className = "pill " + (on ? "on" : "off");
}

function connectFeed() {
  if (state.feed) state.feed.close();
  const feed = new EventSource("/api/feed");
  state.feed = feed;
  feed.addEventListener("ready", () => { setFeed(true); loadQueue(); });
  feed.addEventListener("error", () => setFeed(false));
  feed.addEventListener("transfer", (event) => {
    const { transfer } = JSON.parse(event.data);
    state.queue.set(transfer.call_id, { ...transfer, fresh: true });
    renderQueue();
  });
  feed.addEventListener("transfer_update", (event) => {
    const update = JSON.parse(event.data);
    const item = state.queue.get(update.call_id);
    const mine = update.claimed_by && update.claimed_by === state.me?.name;
    if (update.status === "callback") {
      loadQueue();  // back in everyone's queue: the human line did not take the call
    } else if (update.status === "claimed" && mine && item) {
      Object.assign(item, { status: "claimed", claimed_by: update.claimed_by });
    } else {
      state.queue.delete(update.call_id);
    }
    renderQueue();
    if (state.current?.call_id === update.call_id) openCall(update.call_id);
  });
  feed.addEventListener("transcript", (event) => {  // the caller's own words are ready
    const notice = JSON.parse(event.data);
    if (state.current?.call_id === notice.call_id) openCall(notice.call_id);
  });
}

async function loadQueue() {
  const result = await api("/api/transfers");
  if (!result.ok) return;
  state.clockSkew = result.data.now * 1000 - Date.now();
  state.queue = new Map(result.data.transfers.map((t) => [t.call_id, t]));
  renderQueue();
}

function waited(since) {
  const seconds = Math.max(0, Math.round((Date.now() + (state.clockSkew || 0)) / 1000 - since));
  return seconds < 60 ? `${seconds}s` : `${Math.floor(seconds / 60)}m ${seconds % 60}s`;
}

function sentimentText(score, label) {
  if (score === null || score === undefined) return label === "unavailable" ? "mood n/a" : "mood —";
  const name = label || (score <= -0.05 ? "negative" : score >= 0.05 ? "positive" : "neutral");
  return `${name} (${score.toFixed(2)})`;
}

function sentimentClass(score) {
  if (score === null || score === undefined) return "sent-unavailable";
  return score <= -0.05 ? "sent-negative" : score >= 0.05 ? "sent-positive" : "sent-neutral";
}

function renderQueue() {
  const list = $("queue");
  list.replaceChildren();
  const items = [...state.queue.values()].sort((a, b) => a.decided_at - b.decided_at);
  for (const t of items) {
    const li = el("li", { "data-call": t.call_id, class: t.status === "claimed" ? "claimed" : "" },
      el("div", { class: "q-top" }, el("span", {}, t.caller || "unknown caller"),
        el("span", { class: "q-wait", "data-since": t.decided_at }, waited(t.decided_at))),
      el("div", {}, REASONS[t.reason] || t.reason),
      el("div", { class: "q-meta" },
        el("span", { class: sentimentClass(t.sentiment) }, sentimentText(t.sentiment, t.sentiment_label)),
        ` · ${t.language} · ${QUEUE_STATUS[t.status] || t.status}`));
    if (t.fresh) { li.classList.add("new"); t.fresh = false; }
    if (state.current?.call_id === t.call_id) li.classList.add("selected");
    li.addEventListener("click", () => openCall(t.call_id));
    list.append(li);
  }
  $("queue-count").textContent = String(items.filter((t) => t.status !== "claimed").length);
  $("queue-empty").hidden = items.length > 0;
}

setInterval(() => {
  for (const span of document.querySelectorAll(".q-wait")) span.textContent = waited(+span.dataset.since);
}, 1000);

// --- one call -------------------------------------------------------------------
let openSeq = 0;  // a slower, older response must not overwrite a newer one

async function openCall(callId) {
  const seq = ++openSeq;
  const result = await api(`/api/calls/${encodeURIComponent(callId)}`);
  if (seq !== openSeq) return;
  if (!result.ok) { $("call-message").textContent = "This call is no longer available."; return; }
  if (state.current?.call_id !== callId) $("call-message").textContent = "";
  state.current = result.data;
  renderCall(result.data);
  renderQueue();
}

function renderCall(call) {
  $("call-panel").hidden = false;
  const transfer = call.transfer || { status: call.outcome || "in progress", claimed_by: "" };
  $("call-title").textContent = call.caller || "Unknown caller";
  $("call-status").textContent = transfer.claimed_by ? `${transfer.status} · ${transfer.claimed_by}` : transfer.status;
  $("call-reason").textContent = REASONS[call.handoff_reason || transfer.reason] || "Not handed over";
  $("call-next").textContent = "Next: " + call.assist.next_action;
  $("claim").disabled = !["waiting", "callback"].includes(transfer.status);
  const holder = transfer.claimed_by === state.me.name || ROLES.indexOf(state.me.role) >= 1;
  $("dispose").disabled = !(holder && ["waiting", "claimed", "callback"].includes(transfer.status));
  renderTranscript(call);
  renderSummary(call.assist.summary, call.summary);
  renderSentiment(call.assist.sentiment);
  renderSuggestions(call.assist.suggestions);
  const d = call.disclosure_played_at
    ? `Played ${new Date(call.disclosure_played_at * 1000).toLocaleTimeString()} (confirmed by ${call.disclosure_confirmed_by})`
    : call.disclosure_started_at ? "Started, not confirmed as played" : "Not played";
  $("disclosure").textContent = `${d}: “${call.disclosure_text}”`;
}

function renderTranscript(call) {
  const list = $("transcript");
  list.replaceChildren();
  const threshold = call.word_confidence_threshold;
  call.utterances.forEach((u, index) => {
    const line = el("li", { class: "utterance" });
    if (u.source === "dtmf") {
      line.append(el("em", {}, `pressed ${u.text}`));
    } else if (u.words && u.words.length) {
      u.words.forEach((w, i) => {
        if (i) line.append(" ");
        line.append(w.conf < threshold ? el("mark", { class: "low", title: `confidence ${w.conf}` }, w.text) : w.text);
      });
    } else {
      line.append(u.text ? (u.confidence < threshold ? el("mark", { class: "low" }, u.text) : u.text)
                         : el("em", {}, "(nothing recognised)"));
    }
    if (u.source !== "dtmf") line.prepend(el("span", { class: "u-label" }, "bot understood: "));
    line.append(el("span", { class: "u-meta" }, `${u.start.toFixed(1)}s · conf ${u.confidence.toFixed(2)}` +
      (u.intent ? ` · ${u.intent}` : "")));
    const free = u.source === "dtmf" ? null : freeText(call, u);
    if (free) line.append(free);
    const flag = el("button", { class: "secondary u-flag", title: "The transcript is wrong here" }, "wrong?");
    flag.addEventListener("click", () => transcriptWrong(call.call_id, index));
    line.append(flag);
    list.append(line);
  });
  if (!call.utterances.length) list.append(el("li", {}, el("em", {}, "The caller said nothing.")));
}

function freeText(call, u) {  // the background free-form pass over the same audio
  const t = (call.transcripts || []).filter((x) => Math.abs(x.start - u.start) < 0.001).pop();
  if (!t) return null;
  const said = el("div", { class: "u-free", title: `${t.engine} ${t.model}` },
    el("span", { class: "u-label" }, "caller said: "));
  if (t.status !== "ok") said.append(el("em", {}, t.status === "skipped" ? "(not transcribed: busy)" : "(transcription failed)"));
  else if (!t.words.length) said.append(t.text || el("em", {}, "(no words)"));
  else t.words.forEach((w, i) => {
    if (i) said.append(" ");
    said.append(w.conf < call.word_confidence_threshold ? el("mark", { class: "low", title: `confidence ${w.conf}` }, w.text) : w.text);
  });
  return said;
}

function renderSummary(summary, text) {
  const dl = $("summary");
  dl.replaceChildren();
  const add = (term, value) => dl.append(el("dt", {}, term), el("dd", {}, value));
  add("Wanted", summary.intent_text);
  add("Why here", summary.reason_text || "—");
  add("Details", summary.entities.length ? summary.entities.map((e) => `${e.kind.replace("_", " ")} ${e.value}`).join(", ") : "—");
  add("Bot tried", summary.bot_tried.length ? summary.bot_tried.join("; ") : "nothing yet");
  add("In short", text || "—");
}

function renderSentiment(s) {
  const box = $("sentiment");
  box.replaceChildren();
  box.append(el("span", { class: sentimentClass(s.score) }, sentimentText(s.score, s.label)),
    s.available ? ` · trend ${s.trend}` : "");
  const points = s.per_utterance.filter((v) => v !== null);
  if (points.length > 1) box.append(sparkline(points));
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function sparkline(values) {
  const w = 160, h = 40, step = w / (values.length - 1);
  const chart = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": "sentiment trend" });
  chart.append(svg("line", { x1: 0, x2: w, y1: h / 2, y2: h / 2, stroke: "#d9dde5" }));
  const pts = values.map((v, i) => `${i * step},${(h / 2) - v * (h / 2 - 3)}`).join(" ");
  chart.append(svg("polyline", { points: pts, fill: "none", stroke: "#1f5fbf", "stroke-width": 2 }));
  return chart;
}

function renderSuggestions(suggestions) {
  const list = $("suggestions");
  list.replaceChildren();
  for (const s of suggestions) {
    list.append(el("li", {}, el("strong", {}, s.title), el("div", { class: "small" }, s.body),
      el("div", { class: "matched" }, "matched: " + s.matched.join(", "))));
  }
  if (!suggestions.length) list.append(el("li", { class: "muted" }, "No matching article."));
}

$("claim").addEventListener("click", async () => {
  const id = state.current.call_id;
  const result = await api(`/api/transfers/${encodeURIComponent(id)}/claim`, { body: {} });
  if (result.ok) state.queue.set(id, { ...(state.queue.get(id) || {}), ...result.data.transfer });
  await openCall(id);  // the status shown, then the message: they never disagree
  $("call-message").textContent = result.ok ? "Claimed: the call is yours."
    : `Could not claim: ${result.data.error || result.status}`;
});

$("dispose").addEventListener("click", async () => {
  const disposition = $("disposition").value;
  if (!disposition) { $("call-message").textContent = "Choose a disposition first."; return; }
  const id = state.current.call_id;
  const result = await api(`/api/calls/${encodeURIComponent(id)}/disposition`,
    { body: { disposition, notes: $("disposition-notes").value } });
  $("call-message").textContent = result.ok ? "Call closed." : `Could not close: ${result.data.error || result.status}`;
  if (result.ok) { state.queue.delete(id); renderQueue(); openCall(id); }
});

$("not-transfer").addEventListener("click", () =>
  sendFeedback({ kind: "should_not_have_transferred", comment: prompt("Why not? (optional)") || "" }));

function transcriptWrong(callId, index) {
  const correction = prompt("What did the caller actually say?");
  if (correction === null) return;
  sendFeedback({ kind: "transcript_wrong", utterance: index, correction });
}

async function sendFeedback(body) {
  const id = state.current.call_id;
  const result = await api(`/api/calls/${encodeURIComponent(id)}/feedback`, { body });
  $("call-message").textContent = result.ok ? "Thanks: feedback recorded for retuning." : `Feedback failed: ${result.data.error}`;
}

// --- supervisor -----------------------------------------------------------------
for (const button of document.querySelectorAll("nav button")) {
  button.addEventListener("click", () => {
    for (const other of document.querySelectorAll("nav button")) other.classList.toggle("active", other === button);
    for (const tab of document.querySelectorAll(".tab")) tab.hidden = tab.id !== button.dataset.tab;
    if (button.dataset.tab === "supervisor-tab") loadSupervisor();
  });
}

async function loadSupervisor() {
  const midnight = new Date(); midnight.setHours(0, 0, 0, 0);
  const report = await api(`/api/reports/handoffs?since=${midnight.getTime() / 1000}`);
  if (report.ok) {
    renderChart(report.data.reasons);
    $("outcomes").textContent = "Today: " + (Object.entries(report.data.outcomes)
      .map(([k, v]) => `${v} ${k}`).join(", ") || "no calls yet");
  }
  loadCalls();
}

function renderChart(reasons) {
  const entries = Object.keys(REASONS).map((k) => [k, reasons[k] || 0]);
  const max = Math.max(1, ...entries.map(([, n]) => n));
  const rowH = 26, labelW = 190, barW = 260, w = labelW + barW + 40;
  const chart = svg("svg", { width: w, height: entries.length * rowH + 4, role: "img",
    "aria-label": "handoff reasons today", id: "reasons-svg" });
  entries.forEach(([key, n], i) => {
    const y = i * rowH + 2;
    const label = svg("text", { x: 0, y: y + 16 }); label.textContent = REASONS[key];
    const bar = svg("rect", { x: labelW, y: y + 3, height: rowH - 8, width: Math.max(2, (n / max) * barW),
      fill: n ? "#1f5fbf" : "#d9dde5", rx: 3, "data-reason": key, "data-count": n });
    const count = svg("text", { x: labelW + Math.max(2, (n / max) * barW) + 6, y: y + 16 }); count.textContent = String(n);
    chart.append(label, bar, count);
  });
  $("reasons-chart").replaceChildren(chart);
}

async function loadCalls(event) {
  if (event) event.preventDefault();
  const params = new URLSearchParams([...new FormData($("call-filters"))].filter(([, v]) => v));
  const result = await api(`/api/calls?${params}`);
  if (!result.ok) return;
  const body = $("calls").querySelector("tbody");
  body.replaceChildren();
  for (const c of result.data.calls) {
    const row = el("tr", {}, el("td", {}, new Date(c.started_at * 1000).toLocaleString()),
      el("td", {}, c.caller || "—"), el("td", {}, c.outcome || "in progress"),
      el("td", {}, c.handoff_reason || "—"),
      el("td", {}, c.transfer_status ? `${c.transfer_status}${c.disposition ? " · " + c.disposition : ""}` : "—"));
    row.addEventListener("click", () => {
      document.querySelector('nav button[data-tab="queue-tab"]').click();
      openCall(c.call_id);
    });
    body.append(row);
  }
}
$("call-filters").addEventListener("submit", loadCalls);

async function loadReviewSample() {
  const result = await api("/api/review/sample?n=10&since=7d");
  if (!result.ok) return;
  const list = $("review-list");
  list.replaceChildren();
  for (const c of result.data.calls) {
    const open = el("button", { class: "secondary review-call", "data-call": c.call_id },
      `${new Date(c.started_at * 1000).toLocaleString()} · ${c.language} · ${c.summary || "no summary"}`);
    open.addEventListener("click", () => {
      document.querySelector('nav button[data-tab="queue-tab"]').click();
      openCall(c.call_id);
    });
    list.append(el("li", {}, open));
  }
  if (!result.data.calls.length) list.append(el("li", {}, el("em", {}, "Nothing left to review this week.")));
}
$("review-sample").addEventListener("click", loadReviewSample);
$("reviewed-ok").addEventListener("click", () => sendFeedback({ kind: "reviewed_ok" }));

start();
