// handoffd dashboard: plain JavaScript and SVG, served by the daemon (no CDN, no build step).
// Two pages: the cluster ("/") and a run ("/runs/RUN_ID"), both fed by server-sent events from
// /api/events, so every change shows without a reload.
"use strict";

const STATE_COLORS = {
  DONE: "#2e9d5b", RUNNING: "#2f6fdb", ASSIGNED: "#6b9cf0", READY: "#e0a526", PENDING: "#b8b8c2",
  FAILED: "#d64541", CANCELLED: "#7d7d86", LOST: "#b05fd1", TIMEOUT: "#e0662b", CRASHED: "#a8322e",
};
const SVG = "http://www.w3.org/2000/svg";
window.__handoffd = { pageId: Math.random().toString(36).slice(2), updates: 0 };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function badge(state) { return el("span", { class: "badge " + state, text: state }); }

function when(t) {
  if (!t) return "-";
  const d = new Date(t * 1000);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function seconds(s) {
  if (s === null || s === undefined) return "-";
  if (s < 1) return (s * 1000).toFixed(1) + " ms";
  if (s < 120) return s.toFixed(2) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function section(title, ...children) { return el("section", {}, el("h2", { text: title }), ...children); }

function live(on) {
  const tag = document.getElementById("live");
  tag.textContent = on ? "live" : "reconnecting";
  tag.className = "live" + (on ? " on" : "");
}

function stream(query, kind, render) {
  const source = new EventSource("/api/events" + query);
  source.addEventListener(kind, (e) => {
    live(true);
    window.__handoffd.updates += 1;
    render(JSON.parse(e.data));
  });
  source.addEventListener("error", () => live(false));
  return source;
}

// -- the cluster page ---------------------------------------------------------------------------

function resources(node) {
  const box = el("div", { class: "res" });
  for (const kind of Object.keys(node.capacity).sort()) {
    const cap = node.capacity[kind];
    const free = node.free[kind] ?? cap;
    const used = Math.max(0, cap - free);
    const fill = el("span");
    fill.style.width = (cap > 0 ? Math.min(100, (100 * used) / cap) : 0) + "%";
    box.append(
      el("span", { class: "muted", text: kind }),
      el("span", { class: "bar", title: `${used} of ${cap} in use` }, fill),
      el("span", { text: `${+free.toFixed(2)} free of ${+cap.toFixed(2)}` }),
    );
  }
  return box;
}

function renderCluster(doc) {
  const app = document.getElementById("app");
  document.getElementById("crumbs").textContent = `cluster · ${doc.nodes.length} nodes`;
  const nodes = el("table", { id: "nodes" },
    el("tr", {}, ...["node", "status", "address", "version", "uptime", "resources (used / capacity)"].map((h) => el("th", { text: h }))));
  for (const n of doc.nodes) {
    nodes.append(el("tr", { "data-node": n.name },
      el("td", { text: n.name }), el("td", {}, badge(n.status)), el("td", { text: n.address }),
      el("td", { text: n.version ?? "-" }), el("td", { text: seconds(n.uptime_s) }),
      el("td", {}, resources(n))));
  }
  const runs = el("table", { id: "runs" },
    el("tr", {}, ...["run", "owner", "state", "done", "submitted", "finished", "took"].map((h) => el("th", { text: h }))));
  // The newest 100 (the browser often shares the machine with the daemons it watches).
  for (const r of doc.runs.slice(0, 100)) {
    const total = Object.values(r.counts).reduce((a, b) => a + b, 0);
    const took = r.finished && r.submitted ? r.finished - r.submitted : null;
    runs.append(el("tr", { "data-run": r.run_id },
      el("td", {}, el("a", { href: "/runs/" + encodeURIComponent(r.run_id), text: r.run_id })),
      el("td", { text: r.owner_changing ? `${r.owner} (owner changing${r.next_owner ? `: ${r.next_owner} takes over` : ""})` : r.owner }), el("td", {}, badge(r.state)),
      el("td", { text: `${r.counts.DONE ?? 0} / ${total}` }),
      el("td", { text: when(r.submitted) }), el("td", { text: when(r.finished) }),
      el("td", { text: seconds(took) })));
  }
  app.replaceChildren(
    section("Nodes", nodes),
    section(doc.runs.length > 100 ? `Runs (newest 100 of ${doc.runs.length})` : `Runs (${doc.runs.length})`, doc.runs.length ? runs : el("p", { class: "muted", text: "no runs yet" })),
  );
}

// -- the run page -------------------------------------------------------------------------------

function levels(tasks) {
  const byId = new Map(tasks.map((t) => [t.id, t]));
  const level = new Map();
  const visit = (t, depth) => {
    if (level.has(t.id)) return level.get(t.id);
    if (depth > 10000) return 0;
    let l = 0;
    for (const d of t.deps) if (byId.has(d)) l = Math.max(l, visit(byId.get(d), depth + 1) + 1);
    level.set(t.id, l);
    return l;
  };
  for (const t of tasks) visit(t, 0);
  return level;
}

function renderDag(tasks) {
  if (tasks.length > 2000) return el("p", { class: "muted", text: `${tasks.length} tasks: too many to draw (the table lists them)` });
  const level = levels(tasks);
  const columns = [];
  for (const t of tasks) (columns[level.get(t.id)] ??= []).push(t);
  const big = tasks.length > 300;
  const W = big ? 18 : 130, H = big ? 14 : 30, BW = big ? 12 : 110, BH = big ? 10 : 22;
  const tallest = Math.max(1, ...columns.map((c) => (c ? c.length : 0)));
  const width = columns.length * W + 20, height = tallest * H + 20;
  const pos = new Map();
  columns.forEach((col, x) => (col || []).forEach((t, y) => pos.set(t.id, [10 + x * W, 10 + y * H])));
  const root = svg("svg", { id: "dag", width, height, viewBox: `0 0 ${width} ${height}` });
  const edges = svg("g", { stroke: "#c6c6ce", fill: "none" });
  for (const t of tasks) {
    const [x2, y2] = pos.get(t.id);
    for (const d of t.deps) {
      if (!pos.has(d)) continue;
      const [x1, y1] = pos.get(d);
      edges.append(svg("path", { d: `M${x1 + BW},${y1 + BH / 2} C${x1 + BW + 12},${y1 + BH / 2} ${x2 - 12},${y2 + BH / 2} ${x2},${y2 + BH / 2}` }));
    }
  }
  root.append(edges);
  for (const t of tasks) {
    const [x, y] = pos.get(t.id);
    const g = svg("g", { class: "task-node", "data-task-id": t.id, "data-state": t.state },
      svg("title", {}, `${t.id}: ${t.state}${t.node ? " on " + t.node : ""} (${t.attempts.length} attempts)`),
      svg("rect", { x, y, width: BW, height: BH, rx: 4, fill: STATE_COLORS[t.state] || "#999" }));
    if (!big) g.append(svg("text", { x: x + 6, y: y + 15, fill: "#fff" }, t.id.length > 15 ? t.id.slice(0, 14) + "…" : t.id));
    g.addEventListener("click", () => {  // the task's output, under its row in the table
      toggleOutput(t.id, true);
      const row = [...document.querySelectorAll("tr[data-task]")].find((r) => r.dataset.task === t.id);
      if (row) row.scrollIntoView({ block: "center" });
    });
    root.append(g);
  }
  return root;
}

function renderGantt(doc, tasks) {
  const bars = [];
  const rows = new Map();
  let lo = Infinity, hi = -Infinity;
  for (const t of tasks) {
    for (const [attempt, node, pid, state, dispatched, started, ended] of t.attempts) {
      const s = started || dispatched;
      if (!s) continue;
      const e = ended || Date.now() / 1000;
      const row = `${node} · pid ${pid || "?"}`;
      if (!rows.has(row)) rows.set(row, rows.size);
      bars.push({ row, s, e, state, label: `${t.id} #${attempt}: ${state} on ${node} (pid ${pid || "?"}), ${seconds(e - s)}` });
      lo = Math.min(lo, s); hi = Math.max(hi, e);
    }
  }
  if (!bars.length) return el("p", { class: "muted", text: "no attempt has started yet" });
  if (bars.length > 1000) {  // the newest attempts only (the browser shares the machine)
    bars.sort((a, b) => a.s - b.s);
    bars.splice(0, bars.length - 1000);
    lo = bars[0].s;
  }
  const names = [...rows.keys()].sort();
  names.forEach((n, i) => rows.set(n, i));
  const left = 190, width = 900, RH = 18;
  const span = Math.max(hi - lo, 1e-3);
  const x = (t) => left + ((t - lo) / span) * width;
  const root = svg("svg", { id: "gantt", width: left + width + 60, height: names.length * RH + 30 });
  names.forEach((n, i) => {
    root.append(svg("text", { x: 4, y: i * RH + 13 }, n));
    root.append(svg("line", { x1: left, x2: left + width, y1: i * RH + RH, y2: i * RH + RH, stroke: "#eee" }));
  });
  for (const b of bars) {
    const y = rows.get(b.row) * RH + 3;
    root.append(svg("rect", { class: "attempt", x: x(b.s), y, width: Math.max(1.5, x(b.e) - x(b.s)), height: RH - 6, fill: STATE_COLORS[b.state] || "#999" }, svg("title", {}, b.label)));
  }
  const axisY = names.length * RH + 20;
  for (let i = 0; i <= 5; i++) {
    const t = lo + (span * i) / 5;
    root.append(svg("text", { x: x(t) - 10, y: axisY, fill: "#6b6b76" }, `+${seconds(t - lo)}`));
  }
  return root;
}

function legend() {
  return el("div", { class: "legend" }, ...Object.entries(STATE_COLORS).map(([s, c]) => {
    const sw = el("i");
    sw.style.background = c;
    return el("span", {}, sw, s);
  }));
}

// -- task output (what a task's attempts printed and logged, from /api/runs/RUN/output) -----------

// Tasks whose output is open, and per task what was fetched: {sig, entries, next, more, error,
// loading}. "sig" is the task's state and attempts when fetched: when they change (an attempt
// ended, and its output reached the owner with its report) the output is fetched again.
const outputs = { open: new Set(), cache: new Map(), boxes: new Map(), want: new Map(), redraw: null };

function taskSig(t) {
  const last = t.attempts[t.attempts.length - 1];
  return `${t.state}|${t.attempts.length}|${last ? last[6] || "" : ""}`;
}

function fetchOutput(runId, task, sig, more) {
  const prev = outputs.cache.get(task);
  const since = more && prev ? prev.next : 0;
  const entry = more && prev ? { ...prev, loading: true } : { sig, entries: [], next: 0, more: false, loading: true };
  outputs.cache.set(task, entry);
  fillOutput(runId, task);
  // "seen": what this page knows of the task, so that the HTTP process's short-lived cache never
  // answers with the output from before the change that made the page ask.
  const url = `/api/runs/${encodeURIComponent(runId)}/output?task=${encodeURIComponent(task)}&since=${since}&seen=${encodeURIComponent(entry.sig)}`;
  fetch(url).then((r) => r.json().then((body) => ({ ok: r.ok, body }))).then(({ ok, body }) => {
    if (outputs.cache.get(task) !== entry) return;  // asked again meanwhile
    if (!ok) outputs.cache.set(task, { ...entry, loading: false, error: body.error || "no answer" });
    else outputs.cache.set(task, { sig: entry.sig, entries: entry.entries.concat(body.entries), next: body.next, more: body.more, loading: false, error: null });
    fillOutput(runId, task);
    // The task moved while this was under way: its newer output.
    const want = outputs.want.get(task);
    if (ok && want && want !== entry.sig && outputs.open.has(task)) fetchOutput(runId, task, want, false);
  }).catch((err) => {
    if (outputs.cache.get(task) !== entry) return;
    outputs.cache.set(task, { ...entry, loading: false, error: String(err) });
    fillOutput(runId, task);
  });
}

// The output box of a task: user text only ever goes in as textContent (never as HTML).
function fillOutput(runId, task) {
  const box = outputs.boxes.get(task);
  if (!box) return;
  const got = outputs.cache.get(task);
  const parts = [];
  if (got) {
    for (const e of got.entries) {
      parts.push(el("div", { class: "attempt-output", "data-attempt": String(e.attempt) },
        el("div", { class: "muted", text: `${e.task} · attempt ${e.attempt} on ${e.node}` }),
        el("pre", { class: "output-text", text: e.text })));
    }
    if (got.error) parts.push(el("p", { class: "error", text: "output: " + got.error }));
    else if (!got.entries.length && !got.loading) {
      parts.push(el("p", { class: "muted", text: "no output kept for this task (yet): an attempt's output reaches the run's owner when the attempt ends" }));
    }
    if (got.loading) parts.push(el("p", { class: "muted", text: "loading output…" }));
    else if (got.more) parts.push(el("button", { class: "toggle", onclick: () => fetchOutput(runId, task, got.sig, true) }, "more output"));
  }
  box.replaceChildren(...parts);
}

function outputRow(runId, t) {
  const box = el("div", { class: "output", "data-output-task": t.id });
  outputs.boxes.set(t.id, box);
  outputs.want.set(t.id, taskSig(t));
  const got = outputs.cache.get(t.id);
  if (!got || (got.sig !== taskSig(t) && !got.loading)) fetchOutput(runId, t.id, taskSig(t), false);
  else fillOutput(runId, t.id);
  return el("tr", { class: "output-row", "data-output-for": t.id }, el("td", { colspan: "7" }, box));
}

function toggleOutput(task, open) {
  if (open ?? !outputs.open.has(task)) outputs.open.add(task);
  else outputs.open.delete(task);
  if (outputs.redraw) outputs.redraw();
}

function renderRun(runId, doc) {
  const app = document.getElementById("app");
  document.getElementById("crumbs").textContent = `run ${runId}`;
  if (doc.state === "UNKNOWN") {
    app.replaceChildren(section("Run " + runId, el("p", { class: "error", text: "no node of the cluster knows this run (finished runs are forgotten after a while)" })));
    return;
  }
  const tasks = doc.tasks;
  const counts = {};
  for (const t of tasks) counts[t.state] = (counts[t.state] || 0) + 1;
  const cancel = doc.state === "RUNNING"
    ? el("button", { id: "cancel", onclick: () => fetch(`/api/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST" }) }, "Cancel run")
    : null;
  const summary = el("div", { class: "summary" },
    el("div", {}, el("b", { text: "state" }), badge(doc.state)),
    el("div", {}, el("b", { text: "owner" }), `${doc.owner} (term ${doc.term})`),
    el("div", {}, el("b", { text: "submitted" }), when(doc.submitted)),
    el("div", {}, el("b", { text: "started" }), when(doc.started)),
    el("div", {}, el("b", { text: "finished" }), when(doc.finished)),
    el("div", {}, el("b", { text: "tasks" }), Object.entries(counts).map(([s, n]) => `${n} ${s.toLowerCase()}`).join(", ")),
    cancel);
  const table = el("table", { id: "tasks" },
    el("tr", {}, ...["task", "state", "node", "attempts", "started", "duration", "output"].map((h) => el("th", { text: h }))));
  // Past 2000 tasks the table lists only those not DONE (at most 500): the browser shares the
  // machine with the daemons.
  const huge = tasks.length > 2000;
  outputs.boxes.clear();
  const listed = huge ? tasks.filter((t) => t.state !== "DONE").slice(0, 500) : tasks;
  for (const t of listed) {
    const last = t.attempts[t.attempts.length - 1];
    const started = last ? last[5] || last[4] : null;
    const ended = last && last[6] ? last[6] : null;
    table.append(el("tr", { "data-task": t.id, "data-state": t.state },
      el("td", { text: t.id }), el("td", { class: "state" }, badge(t.state)), el("td", { text: t.node ?? "-" }),
      el("td", { text: String(t.attempts.length) }), el("td", { text: when(started) }),
      el("td", { text: started && ended ? seconds(ended - started) : "-" }),
      el("td", {}, el("button", { class: "toggle", "data-output-toggle": t.id, onclick: () => toggleOutput(t.id) },
        outputs.open.has(t.id) ? "hide" : "show"))));
    if (outputs.open.has(t.id)) table.append(outputRow(runId, t));
  }
  // A redraw keeps the tracebacks the user opened.
  const opened = new Set([...document.querySelectorAll("details.failure[open]")].map((d) => d.dataset.key));
  const failures = [];
  for (const t of tasks) for (const e of t.errors) {
    const key = `${t.id}#${e.attempt}`;
    const box = el("details", { class: "failure", "data-task": t.id, "data-key": key },
      el("summary", { class: "error", text: `${t.id} attempt ${e.attempt} on ${e.node}: ${e.type}: ${e.message}` }),
      el("pre", { text: e.traceback || "(no traceback)" }));
    if (opened.has(key)) box.open = true;
    failures.push(box);
  }
  app.replaceChildren(
    section("Run " + runId, summary),
    section("DAG", legend(), renderDag(tasks)),
    section("Timeline (attempts per node and worker)", renderGantt(doc, tasks)),
    section(`Failures (${failures.length})`, ...(failures.length ? failures : [el("p", { class: "muted", text: "none" })])),
    section(huge ? `Tasks (${listed.length} not done listed of ${tasks.length})` : "Tasks", table),
  );
}

// -- routing ------------------------------------------------------------------------------------

// A run's events carry its header and the tasks that changed ("full": all of them); the page keeps
// every task and redraws, at most every BIG_RUN_MS for runs of more than BIG_RUN tasks.
const BIG_RUN = 1000, BIG_RUN_MS = 5000;

function followRun(runId) {
  const tasks = new Map();
  let header = null, timer = null, drawn = 0;
  const draw = () => {
    timer = null;
    drawn = Date.now();
    renderRun(runId, { ...header, tasks: [...tasks.values()] });
  };
  outputs.redraw = () => { if (header) draw(); };
  let lastHeader = "";
  stream("?run=" + encodeURIComponent(runId), "run", (doc) => {
    const headerKey = JSON.stringify({ ...doc, tasks: null, full: null });
    if (!doc.full && doc.tasks && !doc.tasks.length && headerKey === lastHeader) return;
    lastHeader = headerKey;
    if (doc.full || !doc.tasks) tasks.clear();
    for (const t of doc.tasks || []) tasks.set(t.id, t);
    header = doc;
    if (tasks.size <= BIG_RUN) draw();
    else if (!timer) timer = setTimeout(draw, Math.max(0, BIG_RUN_MS - (Date.now() - drawn)));
  });
}

const match = location.pathname.match(/^\/runs\/([^/]+)$/);
if (match) {
  followRun(decodeURIComponent(match[1]));
} else {
  stream("", "cluster", renderCluster);
}
