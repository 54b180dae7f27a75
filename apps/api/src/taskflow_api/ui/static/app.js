// TaskFlow dashboard: live updates without a build step. No inline scripts (CSP friendly).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 2000;

function svg(name, attrs) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

// Stacked bars: tasks finished per minute over the last hour.
function drawChart(chart, minutes) {
  const width = 600, height = 160, bottom = 18, top = 12;
  const max = Math.max(1, ...minutes.map((m) => m.succeeded + m.failed + m.cancelled));
  const slot = width / minutes.length;
  const scale = (height - bottom - top) / max;
  chart.replaceChildren();
  chart.append(svg("line", { x1: 0, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }));
  minutes.forEach((m, i) => {
    let y = height - bottom;
    for (const kind of ["succeeded", "failed", "cancelled"]) {
      const h = m[kind] * scale;
      if (h <= 0) continue;
      y -= h;
      const rect = svg("rect", { x: i * slot + 1, y, width: Math.max(1, slot - 2), height: h, class: kind });
      const title = svg("title", {});
      title.textContent = `${m.minute.slice(11, 16)} UTC: ${m[kind]} ${kind}`;
      rect.append(title);
      chart.append(rect);
    }
  });
  const label = svg("text", { x: 4, y: top, "text-anchor": "start" });
  label.textContent = `max ${max}/min`;
  const left = svg("text", { x: 4, y: height - 4 });
  left.textContent = "60 min ago";
  const right = svg("text", { x: width - 4, y: height - 4, "text-anchor": "end" });
  right.textContent = "now";
  chart.append(label, left, right);
}

function fmtRate(rate) {
  return rate === null ? "—" : `${(rate * 100).toFixed(1)} %`;
}

function renderOverview(data) {
  for (const [status, n] of Object.entries(data.counts)) {
    const cell = document.querySelector(`[data-count="${status}"]`);
    if (cell && cell.textContent !== String(n)) cell.textContent = String(n);
  }
  const set = (field, text) => {
    const node = document.querySelector(`[data-field="${field}"]`);
    if (node) node.textContent = text;
  };
  set("due", String(data.due));
  set("oldest", data.oldest_due_age_seconds === null ? "—" : `${data.oldest_due_age_seconds.toFixed(1)} s`);
  set("finished", String(data.finished_last_hour));
  set("failure-rate", fmtRate(data.failure_rate_last_hour));
  const workers = document.getElementById("workers");
  if (workers) {
    const rows = data.workers.map((w) => {
      const tr = document.createElement("tr");
      for (const [text, cls] of [[`${w.hostname}:${w.pid}`, ""], [String(w.concurrency), ""], [`${w.seconds_since_seen} s ago`, w.alive ? "ok" : "stale"]]) {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.append(td);
      }
      return tr;
    });
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 3;
      td.textContent = "No worker has been seen.";
      tr.append(td);
      rows.push(tr);
    }
    workers.replaceChildren(...rows);
  }
  const types = document.getElementById("by-type");
  if (types && data.by_type) renderByType(types, data.by_type);
  const chart = document.getElementById("chart");
  if (chart) drawChart(chart, data.minutes);
  const summary = document.getElementById("chart-summary");
  if (summary) summary.textContent = `${data.finished_last_hour} finished in the last hour.`;
}

// Throughput and failure rate by task type over the last hour.
function renderByType(body, rows) {
  const trs = rows.map((t) => {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    const link = document.createElement("a");
    link.href = `/ui/tasks?task_type=${encodeURIComponent(t.task_type)}`;
    link.textContent = t.task_type;
    name.append(link);
    tr.append(name);
    const cells = [t.per_minute.toFixed(2), String(t.succeeded), String(t.failed), String(t.cancelled), fmtRate(t.failure_rate)];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 4 && t.failure_rate !== null && t.failure_rate > 0.05) td.className = "stale";
      tr.append(td);
    });
    return tr;
  });
  if (trs.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 6;
    td.textContent = "No task finished in the last hour.";
    tr.append(td);
    trs.push(tr);
  }
  body.replaceChildren(...trs);
}

// A fetch that follows the dashboard's rules: cookies only, a login redirect reloads the page.
async function fetchLive(url, kind) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: kind } });
  if (response.redirected && new URL(response.url).pathname === "/ui/login") {
    window.location.reload();
    return null;
  }
  if (!response.ok) return null;
  return kind === "application/json" ? response.json() : response.text();
}

function every(ms, action) {
  let busy = false;
  const tick = async () => {
    if (busy || document.hidden) return;
    busy = true;
    try { await action(); } catch (err) { /* the next tick tries again */ } finally { busy = false; }
  };
  return window.setInterval(tick, ms);
}

function startOverview() {
  const source = document.getElementById("overview-data");
  const counts = document.getElementById("counts");
  if (!source || !counts) return;
  renderOverview(JSON.parse(source.textContent));
  every(POLL_MS, async () => {
    const data = await fetchLive(counts.dataset.live, "application/json");
    if (data) renderOverview(data);
  });
}

function startTaskList() {
  const rows = document.getElementById("task-rows");
  if (!rows || !rows.dataset.live) return;
  every(POLL_MS, async () => {
    if (rows.contains(document.activeElement)) return; // do not move keyboard focus away
    const html = await fetchLive(rows.dataset.live, "text/html");
    if (html !== null && html.trim() !== rows.innerHTML.trim()) rows.innerHTML = html;
  });
}

// A task's page follows its state changes over SSE and re-renders its details on each.
function startTask() {
  const detail = document.getElementById("task-detail");
  if (!detail || detail.dataset.terminal === "true") return;
  const refresh = async () => {
    const html = await fetchLive(detail.dataset.fragment, "text/html");
    if (html !== null) detail.innerHTML = html;
    const status = document.getElementById("task-status");
    return status ? status.dataset.status : null;
  };
  const terminal = new Set(["succeeded", "failed", "cancelled"]);
  if (window.EventSource) {
    const events = new EventSource(detail.dataset.events);
    events.addEventListener("progress", () => refresh()); // at most about once a second (the worker throttles)
    events.addEventListener("status", async (event) => {
      const state = JSON.parse(event.data);
      if (terminal.has(state.status)) events.close(); // the server ends the stream; do not reconnect
      await refresh();
    });
    events.onerror = () => {
      if (events.readyState === EventSource.CLOSED) pollTask(refresh, terminal);
    };
  } else {
    pollTask(refresh, terminal);
  }
}

function pollTask(refresh, terminal) {
  const timer = every(POLL_MS, async () => {
    if (terminal.has(await refresh())) window.clearInterval(timer);
  });
}

function startSubmitChooser() {
  const chooser = document.getElementById("choose-type");
  if (chooser) chooser.addEventListener("change", () => chooser.form.submit());
}

// A workflow's page re-renders its graph and steps until the workflow has finished.
function startWorkflow() {
  const detail = document.getElementById("workflow-detail");
  if (!detail || detail.dataset.finished === "true") return;
  const timer = every(POLL_MS, async () => {
    if (detail.contains(document.activeElement)) return; // do not move keyboard focus away
    const html = await fetchLive(detail.dataset.fragment, "text/html");
    if (html === null) return;
    detail.innerHTML = html;
    const status = document.getElementById("workflow-status");
    if (status && status.dataset.status !== "running") window.clearInterval(timer);
  });
}

// A batch's page re-renders its counts and progress until the batch and its on_complete have ended.
function startBatch() {
  const detail = document.getElementById("batch-detail");
  if (!detail || detail.dataset.finished === "true") return;
  const timer = every(POLL_MS, async () => {
    const html = await fetchLive(detail.dataset.fragment, "text/html");
    if (html === null) return;
    detail.innerHTML = html;
    const status = document.getElementById("batch-status");
    if (status && status.dataset.settled === "true") window.clearInterval(timer);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  startOverview();
  startTaskList();
  startTask();
  startWorkflow();
  startBatch();
  startSubmitChooser();
});
