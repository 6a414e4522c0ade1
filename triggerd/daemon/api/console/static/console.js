// The console's live updates: plain ES2017, no framework, nothing fetched from elsewhere.
// Every page reads without this file; with it:
//  - /ui/runs (the newest page): the runs table is refreshed when a run event arrives;
//  - a run page: new log and output lines are appended, the header and the tasks table
//    are refreshed on the run's other events;
//  - /ui/events (the newest page): new events go on top while "follow" is on;
//  - the overview: its figures are refreshed every few seconds.
// Events come from /ui/stream (server-sent events); text from the daemon is set with
// textContent only. A refresh takes the same elements (by id) from the page fetched again.
"use strict";

(function () {
  const OVERVIEW_EVERY = 5000; // ms between two refreshes of the overview
  const LEVELS = ["debug", "info", "warning", "error", "critical"];

  function follow(url, after, onEvent, onOpen) {
    // EventSource sends Last-Event-ID itself when it reconnects; `after` is the start. A
    // refusal (503: too many streams) closes it for good: then try again a little later.
    const handle = { source: null, closed: false, close() { this.closed = true; this.source.close(); } };
    const open = () => {
      const sep = url.includes("?") ? "&" : "?";
      const source = new EventSource(after ? url + sep + "after=" + encodeURIComponent(after) : url);
      source.onmessage = (m) => { after = m.lastEventId || after; onEvent(JSON.parse(m.data)); };
      source.onopen = () => { if (onOpen) onOpen(); };
      source.onerror = () => {
        if (source.readyState === EventSource.CLOSED && !handle.closed) setTimeout(open, 10000);
      };
      handle.source = source;
    };
    open();
    return handle;
  }

  function busy() {
    // an operator in a form field: do not replace what they are typing in
    const el = document.activeElement;
    return el && /^(INPUT|SELECT|TEXTAREA)$/.test(el.tagName);
  }

  async function refresh(ids) {
    // the page fetched again; each element of ids replaced by its new self
    const answer = await fetch(location.href, { headers: { accept: "text/html" } });
    if (!answer.ok) return null;
    const page = new DOMParser().parseFromString(await answer.text(), "text/html");
    for (const id of ids) {
      const old = document.getElementById(id);
      const fresh = page.getElementById(id);
      if (old && fresh && !busy()) old.replaceWith(document.importNode(fresh, true));
    }
    return page;
  }

  function debounced(fn, ms) {
    let timer = null;
    return () => {
      if (timer === null) timer = setTimeout(() => { timer = null; fn(); }, ms);
    };
  }

  function clock(time) {
    const el = document.createElement("time");
    el.dateTime = time;
    el.title = time;
    el.textContent = time.slice(11, 19);
    return el;
  }

  function cell(row, text, cls) {
    const td = row.insertCell();
    if (text) td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function level(e) {
    return LEVELS.includes(e.level) ? e.level : "info";
  }

  function newestPage(param) {
    const value = new URLSearchParams(location.search).get(param);
    return !value || value === "0";
  }

  function runsPage(table) {
    // the first page only: older pages keep what they show (keyset paging)
    if (!newestPage("before")) return;
    let wanted = new Map(); // run id -> refreshes left to see it
    const update = debounced(async () => {
      const missing = wanted;
      wanted = new Map();
      await refresh([table.id]);
      // the state file may take a moment after the event: ask again (a few times: a run
      // the filters leave out never shows) for a run not shown yet
      for (const [run, left] of missing) {
        if (left > 1 && !document.getElementById("run-" + run)) wanted.set(run, left - 1);
      }
      if (wanted.size) setTimeout(update, 300);
    }, 150);
    const seen = (e) => { if (e.run && !wanted.has(e.run)) wanted.set(e.run, 4); update(); };
    // and once the stream is open: what came between the page and the stream
    follow(table.dataset.stream, null, seen, update);
  }

  function eventRow(e) {
    const row = document.createElement("tr");
    row.id = "event-" + e.id;
    row.className = "level-" + level(e);
    cell(row).appendChild(clock(e.time));
    const badge = document.createElement("span");
    badge.className = "level " + level(e);
    badge.textContent = e.level;
    cell(row).appendChild(badge);
    cell(row, e.kind);
    const runCell = cell(row, "", "id");
    if (e.run) {
      const link = document.createElement("a");
      link.href = "/ui/runs/" + encodeURIComponent(e.run);
      link.title = e.run;
      link.textContent = "…" + e.run.slice(-8);
      runCell.appendChild(link);
    }
    cell(row, e.rule || "");
    cell(row, [e.dag, e.task].filter(Boolean).join("/"));
    cell(row, e.message, "msg");
    return row;
  }

  function eventsPage(table) {
    if (!newestPage("offset")) return;
    const body = table.tBodies[0];
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.id = "follow";
    box.checked = true;
    label.append(box, " follow");
    table.before(label);
    const first = body.querySelector("tr[id^='event-']");
    follow(table.dataset.stream, first ? first.id.slice(6) : null, (e) => {
      if (!box.checked || document.getElementById("event-" + e.id)) return;
      const empty = body.querySelector("td.muted");
      if (empty) empty.parentElement.remove();
      body.insertBefore(eventRow(e), body.firstChild);
      const limit = Number(new URLSearchParams(location.search).get("limit")) || 100;
      while (body.rows.length > limit) body.deleteRow(-1);
    });
  }

  function logLine(e) {
    const li = document.createElement("li");
    li.id = "event-" + e.id;
    li.className = "level-" + level(e) + (e.kind === "task.failed" ? " failed" : "");
    const stream = (e.data || {}).stream;
    const mark = e.kind === "output" ? (stream === "stderr" ? "!" : "|")
      : e.kind === "task.failed" ? "✗" : e.level.toUpperCase();
    const parts = [["t", e.time.slice(11, 23)], ["where", [e.dag, e.task].filter(Boolean).join("/")],
      ["stream", mark], ["msg", e.message]];
    for (const [cls, text] of parts) {
      const span = document.createElement("span");
      span.className = cls;
      span.textContent = text;
      li.append(span, " ");
    }
    li.firstChild.title = e.time;
    return li;
  }

  function runPage(log) {
    const head = document.getElementById("run-head");
    if (head && !head.querySelector(".badge.active, .badge.pending")) return; // it has ended
    const update = debounced(() => refresh(["run-head", "run-facts", "run-tasks"]), 200);
    const source = follow(log.dataset.stream, log.dataset.after, (e) => {
      if (["log", "output", "task.failed"].includes(e.kind)) {
        if (document.getElementById("event-" + e.id)) return;
        const empty = log.querySelector("li.muted");
        if (empty) empty.remove();
        log.appendChild(logLine(e));
      }
      if (e.kind !== "log" && e.kind !== "output") update();
      if (/^run\.(succeeded|failed|aborted|stopped|rejected)$/.test(e.kind)) source.close();
    });
  }

  function overview() {
    setInterval(() => { if (!document.hidden) refresh(["main"]); }, OVERVIEW_EVERY);
  }

  function start() {
    const runs = document.getElementById("runs");
    const events = document.getElementById("events");
    const log = document.getElementById("log");
    if (runs && runs.dataset.stream) runsPage(runs);
    if (events && events.dataset.stream) eventsPage(events);
    if (log && log.dataset.stream) runPage(log);
    if (document.body.dataset.page === "overview") overview();
  }

  start();
})();
