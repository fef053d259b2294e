// flowq dashboard: renders each page from the JSON API and polls it (no framework, no
// build step). Text from the API only ever reaches the page through textContent.
"use strict";

const POLL_WORKFLOW_MS = 1000;
const POLL_LIST_MS = 2000;
const NODE_W = 176, NODE_H = 54, GAP_X = 56, GAP_Y = 12, PAD = 16;
const COLORS = {
  PENDING: "#c9ced6", RECEIVED: "#a5c8f0", STARTED: "#4f8fdb", RETRY: "#f2b84b",
  SUCCESS: "#3fa46a", FAILURE: "#d9534f", REVOKED: "#8a6bbf",
};
const DARK_TEXT = new Set(["PENDING", "RECEIVED", "RETRY"]);
const SVG_NS = "http://www.w3.org/2000/svg";

let config = { actions: false };

// -- helpers --------------------------------------------------------------------------------

async function api(path, options) {
  const response = await fetch(path, options);
  const doc = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(doc.error || `${response.status} ${response.statusText}`);
  return doc;
}

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

function every(ms, step) {
  const tick = async () => {
    try {
      await step();
      showError("");
    } catch (error) {
      showError(error.message);
    }
    setTimeout(tick, ms);
  };
  tick();
}

function age(seconds) {
  seconds = Math.max(0, seconds);
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (seconds >= size) return `${Math.floor(seconds / size)}${unit}`;
  }
  return `${Math.floor(seconds)}s`;
}

function badge(state) {
  return h("span", { class: `badge s-${state}`, text: state });
}

function progress(doc) {
  const share = doc.total ? Math.min(1, doc.done / doc.total) : 0;
  const bar = h("span", { class: "bar" },
    h("span", { class: doc.failed ? "failing" : "", style: `width:${(share * 100).toFixed(1)}%` }));
  const failed = doc.failed ? `, ${doc.failed} failed` : "";
  return h("span", { class: "progress" }, bar, `${doc.done}/${doc.total}${failed}`);
}

function stuckNote(waiting) {
  if (!waiting || !waiting.length) return null;
  return h("span", { class: "stuck", "data-stuck": "1",
                     text: `⚠ stuck: ${waiting.map((w) => w.path).join(", ")}` });
}

function table(headers, rows) {
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", { text: name })))),
    h("tbody", {}, rows));
}

function setMain(...children) {
  const main = document.getElementById("main");
  main.replaceChildren(...children);
  return main;
}

async function act(path, describe) {
  // An action's outcome stays shown (polls clear only their own errors).
  const notice = document.getElementById("notice");
  try {
    const answer = await api(path, { method: "POST", headers: { "X-Flowq-Action": "1" } });
    notice.className = "done";
    notice.textContent = describe(answer);
  } catch (error) {
    notice.className = "refused";
    notice.textContent = error.message;
  }
  notice.hidden = false;
}

// -- list pages -----------------------------------------------------------------------------

function workflowsPage() {
  const body = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  setMain(h("h1", { text: "Recent workflows" }), body);
  every(POLL_LIST_MS, async () => {
    const doc = await api("/api/workflows?limit=100");
    if (!doc.workflows.length) {
      body.replaceChildren(h("p", { class: "muted",
        text: "No workflow sent recently (workflows sent from outside a task are listed)." }));
      return;
    }
    body.replaceChildren(table(
      ["Root id", "Workflow", "Progress", "State", "Age", ""],
      doc.workflows.map((w) => h("tr", { "data-root-id": w.root_id },
        h("td", {}, h("a", { class: "mono", href: `/workflows/${encodeURIComponent(w.root_id)}`,
                             text: w.root_id })),
        h("td", { text: `${w.shape} of ${w.first || "?"}` }),
        h("td", {}, progress(w)),
        h("td", {}, badge(w.state)),
        h("td", { text: age(w.age) }),
        h("td", {}, stuckNote(w.stuck))))));
  });
}

function workersPage() {
  const body = h("div", {}, h("p", { class: "muted", text: "Asking the workers…" }));
  setMain(h("h1", { text: "Workers" }), body);
  every(POLL_LIST_MS, async () => {
    const doc = await api("/api/workers");
    if (doc.error) throw new Error(doc.error);
    if (!doc.workers.length) {
      body.replaceChildren(h("p", { class: "muted", text: "No worker answers." }));
      return;
    }
    body.replaceChildren(table(
      ["Name", "Status", "Pool", "Concurrency", "Active", "Processed", "Load", "Queues", "Seen"],
      doc.workers.map((w) => h("tr", { "data-worker": w.name },
        h("td", { class: "mono", text: w.name }),
        h("td", {}, badge(w.status)),
        h("td", { text: w.pool || "" }),
        h("td", { class: "num", text: w.concurrency }),
        h("td", { class: "num", text: w.active }),
        h("td", { class: "num", text: w.processed }),
        h("td", { text: load(w) }),
        h("td", { class: "mono", text: (w.queues || []).join(", ") }),
        h("td", { text: `${age(w.seen_ago)} ago` })))));
  });
}

function load(worker) {
  const busy = worker.load === null || worker.load === undefined ? "" :
    `${Math.round(worker.load * 100)}% busy`;
  const avg = worker.loadavg ? ` · loadavg ${worker.loadavg.join(" ")}` : "";
  return busy + avg;
}

function queuesPage() {
  const body = h("div", {});
  setMain(h("h1", { text: "Queues" }), body);
  every(POLL_LIST_MS, async () => {
    const doc = await api("/api/queues");
    if (doc.error) throw new Error(doc.error);
    body.replaceChildren(
      table(["Queue", "Messages waiting"], doc.queues.map((q) => h("tr", { "data-queue": q.name },
        h("td", { class: "mono", text: q.name + (q.dead_letter ? " (dead letters)" : "") }),
        h("td", { class: "num", text: q.messages === null ? "?" : q.messages })))),
      h("p", { class: "muted", text: `${doc.delayed} delayed message(s) wait in the result backend.` }));
  });
}

// -- the workflow page ----------------------------------------------------------------------

function workflowPage(rootId) {
  const summary = h("div", { class: "summary" });
  const graph = h("div", { class: "graph", id: "graph" });
  const panel = h("div", { class: "panel", id: "panel" },
    h("p", { class: "muted", text: "Click a node to see its call and its result." }));
  const legend = h("div", { class: "legend" },
    Object.keys(COLORS).map((state) => badge(state)));
  setMain(h("h1", {}, "Workflow ", h("span", { class: "mono", text: rootId })),
          summary, legend, h("div", { class: "layout" }, graph, panel));
  const view = { rootId, graph, panel, summary, drawn: null, selected: null, shownState: null };
  every(POLL_WORKFLOW_MS, async () => {
    const doc = await api(`/api/workflows/${encodeURIComponent(rootId)}`);
    renderSummary(view, doc);
    renderGraph(view, doc);
    const chosen = doc.nodes[view.selected];
    if (chosen && chosen.state !== view.shownState) await showNode(view, view.selected);
  });
}

function renderSummary(view, doc) {
  const parts = [badge(doc.state), progress(doc),
    h("span", { text: `${doc.shape} of ${doc.first || "?"}` }),
    h("span", { class: "muted", text: `sent ${age(doc.age)} ago` }), stuckNote(doc.stuck)];
  if (config.actions && doc.done < doc.total) {
    parts.push(h("button", { id: "revoke-workflow", text: "Revoke workflow", onclick: async () => {
      if (!confirm(`Revoke every unfinished node of ${doc.root_id}?`)) return;
      await act(`/api/workflows/${encodeURIComponent(doc.root_id)}/revoke`,
                () => "Revoked: its unfinished nodes will not run.");
    } }));
  }
  if (config.actions && doc.done >= doc.total && doc.state === "FAILURE") {
    parts.push(h("button", { id: "resume-workflow", text: "Resume", onclick: async () => {
      await act(`/api/workflows/${encodeURIComponent(doc.root_id)}/resume`,
        (answer) => `Resumed: ${answer.rerun} task(s) run again, ${answer.reused} result(s) kept.`);
    } }));
  }
  view.summary.replaceChildren(...parts.filter(Boolean));
}

function layout(doc) {
  // Columns by longest path from a start (nodes come in topological order), each column
  // ordered by the mean row of the nodes feeding it.
  const count = doc.nodes.length;
  const feeds = Array.from({ length: count }, () => []);
  for (const [source, target] of doc.edges) feeds[target].push(source);
  const column = new Array(count).fill(0);
  for (let i = 0; i < count; i++) {
    for (const source of feeds[i]) column[i] = Math.max(column[i], column[source] + 1);
  }
  const columns = [];
  for (let i = 0; i < count; i++) (columns[column[i]] ||= []).push(i);
  const row = new Array(count).fill(0);
  columns.forEach((members, c) => {
    if (c > 0) {
      const centre = (i) => feeds[i].length ?
        feeds[i].reduce((sum, s) => sum + row[s], 0) / feeds[i].length : row[i];
      members.sort((a, b) => centre(a) - centre(b) || a - b);
    }
    members.forEach((i, r) => { row[i] = r; });
  });
  const tallest = Math.max(1, ...columns.map((members) => members.length));
  const place = new Array(count);
  columns.forEach((members, c) => {
    const offset = (tallest - members.length) * (NODE_H + GAP_Y) / 2;
    members.forEach((i, r) => {
      place[i] = { x: PAD + c * (NODE_W + GAP_X), y: PAD + offset + r * (NODE_H + GAP_Y) };
    });
  });
  return { place, width: PAD * 2 + columns.length * (NODE_W + GAP_X) - GAP_X,
           height: PAD * 2 + tallest * (NODE_H + GAP_Y) - GAP_Y };
}

function clip(text, size) {
  return text.length > size ? text.slice(0, size - 1) + "…" : text;
}

function clipStart(text, size) {
  return text.length > size ? "…" + text.slice(-(size - 1)) : text;
}

function label(node, doc) {
  if (node.kind === "join") {
    const members = doc.edges.filter(([, target, flow]) => target === node.index &&
                                                           flow === "member").length;
    return `join of ${members}`;
  }
  const name = (node.task || node.kind).split(".").pop();
  return clip(node.kind === "fanout" ? `fanout ${name}` : name, 22);
}

function renderGraph(view, doc) {
  if (doc.too_large) {
    view.graph.replaceChildren(h("p", { class: "muted",
      text: `${doc.too_large} nodes: too many to draw; the counts above are live.` }));
    return;
  }
  const shape = doc.nodes.length + ":" + doc.edges.length;
  if (view.drawn !== shape) {
    drawGraph(view, doc);
    view.drawn = shape;
  }
  const stuck = new Set((doc.stuck || []).map((w) => w.path));
  for (const node of doc.nodes) {
    const group = view.nodes[node.index];
    group.dataset.state = node.state;
    group.dataset.stuck = stuck.has(node.path) ? "1" : "0";
    const fill = COLORS[node.state] || COLORS.PENDING;
    group.rect.setAttribute("fill", fill);
    group.rect.setAttribute("stroke", stuck.has(node.path) ? "#e07b00" : "#ffffff");
    const colour = DARK_TEXT.has(node.state) ? "#1d232a" : "#ffffff";
    group.title.setAttribute("fill", colour);
    group.status.setAttribute("fill", colour);
    group.where.setAttribute("fill", colour);
    group.status.textContent = clip(node.state + (node.result ? ` · ${node.result}` : ""), 27);
  }
}

function drawGraph(view, doc) {
  const { place, width, height } = layout(doc);
  const canvas = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`,
                              role: "img", "aria-label": `workflow ${doc.root_id}` });
  for (const [source, target, flow] of doc.edges) {
    const a = place[source], b = place[target];
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
    const bend = Math.max(24, (x2 - x1) / 2);
    canvas.append(svg("path", { class: `edge ${flow}`,
      d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}` }));
  }
  view.nodes = [];
  for (const node of doc.nodes) {
    const at = place[node.index];
    const group = svg("g", { class: "node", transform: `translate(${at.x},${at.y})`,
                             "data-index": node.index, "data-path": node.path,
                             "data-task": node.task || node.kind });
    const tip = svg("title", {});
    tip.textContent = `${node.path}\n${node.task || node.kind}\n${node.id}`;
    group.rect = svg("rect", { width: NODE_W, height: NODE_H, rx: 6 });
    group.title = svg("text", { x: 10, y: 17, "font-weight": 600 });
    group.title.textContent = label(node, doc);
    group.status = svg("text", { x: 10, y: 32 });
    const where = svg("text", { x: 10, y: 46, class: "path", "fill-opacity": 0.8 });
    where.textContent = clipStart(node.path, 30);
    group.where = where;
    group.append(tip, group.rect, group.title, group.status, where);
    group.addEventListener("click", () => showNode(view, node.index));
    canvas.append(group);
    view.nodes[node.index] = group;
  }
  view.graph.replaceChildren(canvas);
  if (view.selected !== null && view.nodes[view.selected]) {
    view.nodes[view.selected].classList.add("selected");
  }
}

async function showNode(view, index) {
  for (const group of view.nodes || []) group.classList.remove("selected");
  if (view.nodes && view.nodes[index]) view.nodes[index].classList.add("selected");
  view.selected = index;
  const doc = await api(`/api/workflows/${encodeURIComponent(view.rootId)}/nodes/${index}`);
  view.shownState = doc.state;
  const rows = [["Task", doc.task || doc.kind], ["Path", doc.path], ["Id", doc.id],
                ["State", badge(doc.state)]];
  if (doc.exception) rows.push(["Exception", pre(doc.exception, "node-exception")]);
  if (doc.traceback) rows.push(["Traceback", pre(doc.traceback, "node-traceback")]);
  if (doc.result !== null) rows.push(["Result", pre(doc.result, "node-result")]);
  rows.push(["Arguments", pre(doc.args, "node-args")],
            ["Keyword arguments", pre(doc.kwargs, "node-kwargs")]);
  if (doc.receives) rows.push(["Also receives", doc.receives]);
  if (doc.options && doc.options !== "{}") rows.push(["Options", pre(doc.options)]);
  const parts = [h("dl", {}, rows.map(([name, value]) => [h("dt", { text: name }),
                                                         h("dd", {}, value)]))];
  if (config.actions && !["SUCCESS", "FAILURE", "REVOKED"].includes(doc.state)) {
    parts.push(h("button", { id: "revoke-task", text: "Revoke this task", onclick: async () => {
      await act(`/api/tasks/${encodeURIComponent(doc.id)}/revoke`, () => `Revoked ${doc.id}.`);
    } }));
  }
  view.panel.dataset.index = index;
  view.panel.replaceChildren(h("h2", { text: `Node ${index}` }), ...parts);
}

function pre(text, id) {
  return h("pre", { id, text });
}

// -- start ----------------------------------------------------------------------------------

async function start() {
  try {
    config = await api("/api/config");
  } catch (error) {
    showError(error.message);
  }
  document.getElementById("about").textContent =
    `${config.app || "app"} · ${config.broker || ""}${config.actions ? " · actions on" : ""}`;
  const path = location.pathname;
  const page = path.startsWith("/workflows/") ? "workflows" : path.slice(1) || "workflows";
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.page === page);
  }
  if (path.startsWith("/workflows/")) workflowPage(decodeURIComponent(path.slice(11)));
  else if (path === "/workers") workersPage();
  else if (path === "/queues") queuesPage();
  else workflowsPage();
}

start();
