// Sawmill's page: one file of plain JavaScript, no build step. It is a client of the server's
// own API: query_range / query (lines and metrics), labels and label values (autocompletion),
// tail (WebSocket) and correlate (a request's timeline). The URL holds the query, range and
// view, so a link reproduces the page.
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE_FIRST = 100; // the first request: small, so lines show at once
const PAGE = 1000; // each following page
const LIVE_MAX = 10000; // lines a live tail keeps on screen
const PAUSE_MAX = 10000; // lines held while paused; more are dropped (and counted)
const ROW = 20;
const LEVELS = ["error", "warn", "info", "debug", "unknown"];
const LEVEL_ALIASES = { err: "error", eror: "error", fatal: "error", critical: "error", crit: "error", panic: "error",
  warning: "warn", wrn: "warn", information: "info", inf: "info", notice: "info", dbg: "debug", trace: "debug" };
const ID_FIELDS = ["request_id", "requestid", "x_request_id", "x-request-id", "correlation_id", "x-correlation-id",
  "trace_id", "traceid", "span_id", "req_id"];
const ID_RE = new RegExp('("?)(' + ID_FIELDS.map((f) => f.replace(/[-_]/g, "[-_]?")).join("|") +
  ')\\1(\\s*[:=]\\s*)("?)([A-Za-z0-9][A-Za-z0-9._:/-]{3,127})', "gi");
const RELATIVE = ["5m", "15m", "30m", "1h", "3h", "6h", "12h", "24h", "2d", "7d", "14d", "30d"];

const state = {
  query: "",
  range: { since: "1h" }, // or { from: ms, to: ms }
  view: "logs",
  id: "",
  tenant: localStorage.getItem("sawmill.tenant") || "",
  needsTenant: false,
  gen: 0, // bumps on every run and tenant change: answers of older runs are dropped
  entries: [], // newest first: { ts: BigInt, tsStr, ms, line, labels, sm, parsed, level, key }
  seen: new Set(),
  heights: null, // per entry, when some are open
  open: new Set(),
  offsets: null,
  oldest: null, // BigInt ns of the oldest entry shown
  exhausted: false,
  resolved: null, // { start: BigInt ns, end: BigInt ns } of the last run
  zoomStack: [],
  series: [],
  hidden: new Set(),
  tail: null,
  labelsCache: null,
  valuesCache: new Map(),
};

// ---------------------------------------------------------------------------------------------
// HTTP

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function headers() {
  const h = { Accept: "application/json", "X-Loki-Response-Encoding-Flags": "categorize-labels" };
  if (state.tenant) h["X-Scope-OrgID"] = state.tenant;
  return h;
}

async function api(path, params, signal) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== "") qs.set(k, String(v));
  const url = path + (qs.toString() ? "?" + qs : "");
  let r;
  try {
    r = await fetch(url, { headers: headers(), signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "the server did not answer: " + e.message);
  }
  const text = await r.text();
  state.answeredAt = performance.now();
  if (!r.ok) {
    if (r.status === 401) askTenant(text.trim());
    throw new ApiError(r.status, text.trim() || r.status + " " + r.statusText);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(r.status, "unreadable answer from the server: " + e.message);
  }
}

// ---------------------------------------------------------------------------------------------
// Time

const UNITS = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000, w: 604800000, y: 31536000000 };

function parseDuration(s) {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)/gy;
  let total = 0, m, pos = 0;
  s = String(s).trim();
  if (!s) return null;
  while ((m = re.exec(s))) { total += parseFloat(m[1]) * UNITS[m[2]]; pos = re.lastIndex; }
  return pos === s.length && total > 0 ? total : null;
}

function fmtDuration(ms) {
  for (const [u, v] of [["d", 86400000], ["h", 3600000], ["m", 60000], ["s", 1000]]) {
    if (ms >= v && ms % v === 0) return ms / v + u;
  }
  return Math.round(ms) + "ms";
}

// "now", "now-1h", RFC 3339, or a date the browser reads; ms since the epoch, or null.
function parseTime(s) {
  s = String(s || "").trim();
  if (!s) return null;
  const rel = /^now(?:\s*-\s*(.+))?$/i.exec(s);
  if (rel) {
    if (!rel[1]) return Date.now();
    const d = parseDuration(rel[1]);
    return d === null ? null : Date.now() - d;
  }
  if (/^\d{10,19}$/.test(s)) { // seconds, ms or ns since the epoch
    const n = Number(s);
    return s.length <= 10 ? n * 1000 : s.length <= 13 ? n : Math.floor(n / 1e6);
  }
  const t = Date.parse(s);
  return isNaN(t) ? null : t;
}

function rangeMs() {
  const r = state.range;
  if (r.since) { const to = Date.now(); return { from: to - parseDuration(r.since), to }; }
  return { from: r.from, to: r.to };
}

const pad = (n, w = 2) => String(n).padStart(w, "0");
function fmtTime(ms, withDate) {
  const d = new Date(ms);
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}` : t;
}
function isoish(ms) { return new Date(ms).toISOString().replace(".000Z", "Z"); }
function rangeLabel() {
  const r = state.range;
  if (r.since) return "Last " + r.since;
  return fmtTime(r.from, true).slice(0, 19) + " → " + fmtTime(r.to, true).slice(0, 19);
}
const nsOf = (ms) => BigInt(Math.floor(ms)) * 1000000n;

// ---------------------------------------------------------------------------------------------
// LogQL: tokens (highlighting, autocompletion) and small edits (filters from fields)

const KEYWORDS = new Set(["by", "without", "bool", "on", "ignoring", "group_left", "group_right", "offset", "and", "or", "unless",
  "json", "logfmt", "regexp", "pattern", "unpack", "line_format", "label_format", "drop", "keep", "decolorize", "unwrap",
  "ip", "duration", "duration_seconds", "bytes", "label_replace", "vector", "sum", "avg", "min", "max", "count", "stddev", "stdvar",
  "topk", "bottomk", "sort", "sort_desc", "rate", "rate_counter", "count_over_time", "bytes_rate", "bytes_over_time",
  "sum_over_time", "avg_over_time", "max_over_time", "min_over_time", "first_over_time", "last_over_time",
  "stdvar_over_time", "stddev_over_time", "quantile_over_time", "absent_over_time", "approx_topk"]);
const STAGES = [
  ["json", "parse JSON fields"], ["logfmt", "parse key=value fields"], ["regexp", 'named groups: regexp "(?P<x>...)"'],
  ["pattern", 'pattern "<ip> - <_> <status>"'], ["unpack", "unpack promtail's packed lines"],
  ["line_format", 'line_format "{{.field}}"'], ["label_format", "label_format new=old"], ["drop", "drop labels"],
  ["keep", "keep labels"], ["decolorize", "strip ANSI colours"], ["unwrap", "unwrap a numeric label"]];
const FUNCS = [["rate", "per-second rate of lines"], ["count_over_time", "lines per range"], ["bytes_over_time", "bytes per range"],
  ["bytes_rate", "bytes per second"], ["sum_over_time", "sum of unwrapped values"], ["avg_over_time", "average of unwrapped values"],
  ["max_over_time", ""], ["min_over_time", ""], ["quantile_over_time", "quantile_over_time(0.95, ...)"],
  ["first_over_time", ""], ["last_over_time", ""], ["absent_over_time", ""], ["sum", "aggregate: sum by (label)"],
  ["avg", ""], ["count", ""], ["max", ""], ["min", ""], ["topk", ""], ["bottomk", ""], ["stddev", ""], ["sort_desc", ""]];

// Tokens with their kind: s(tring), n(umber/duration), k(eyword), l(abel), o(perator), c(omment), b(racket), w(ord), ' ' (space).
function tokenize(src) {
  const out = [];
  const re = /(#[^\n]*)|("(?:[^"\\\n]|\\.)*"?|`[^`]*`?)|(\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d|w|y|[KMGTP]i?B|B)?\b)|([A-Za-z_][A-Za-z0-9_.]*)|(\|=|\|~|!=|!~|=~|==|>=|<=|\||=|>|<|\+|-|\*|\/|%|\^)|([{}()\[\],])|(\s+)|(.)/gsy;
  let m;
  let depth = 0; // inside a { } selector
  while ((m = re.exec(src))) {
    const [t, cm, str, num, word, op, br, sp] = m;
    const at = m.index;
    let kind = "w";
    if (cm) kind = "c";
    else if (str) kind = "s";
    else if (num) kind = "n";
    else if (word) {
      const next = src.slice(re.lastIndex).match(/^\s*(=~|!~|!=|=|>=|<=|==|>|<)/);
      kind = depth > 0 || next ? "l" : KEYWORDS.has(word) ? "k" : "w";
    } else if (op) kind = "o";
    else if (br) { kind = "b"; if (t === "{") depth++; else if (t === "}") depth = Math.max(0, depth - 1); }
    else if (sp) kind = " ";
    out.push({ t, kind, at });
  }
  return out;
}

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

// Highlighted HTML of the query, with a marker at the error's position (line, col: 1-based).
function highlight(src, mark) {
  let markAt = -1;
  if (mark) {
    const lines = src.split("\n");
    markAt = 0;
    for (let i = 0; i < mark.line - 1 && i < lines.length; i++) markAt += lines[i].length + 1;
    markAt += Math.max(0, mark.col - 1);
  }
  let html = "";
  const chars = Array.from(src); // columns count characters, not UTF-16 units
  const text = chars.join("");
  let cpos = 0; // char index at token start
  for (const tok of tokenize(text)) {
    const n = Array.from(tok.t).length;
    let inner;
    if (markAt >= cpos && markAt < cpos + n) {
      const a = Array.from(tok.t), k = markAt - cpos;
      inner = esc(a.slice(0, k).join("")) + `<span class="mark">${esc(a[k])}</span>` + esc(a.slice(k + 1).join(""));
    } else inner = esc(tok.t);
    html += tok.kind === " " || tok.kind === "w" ? inner : `<span class="${tok.kind}">${inner}</span>`;
    cpos += n;
  }
  if (markAt >= cpos) html += `<span class="mark eol"> </span>`;
  return html + "\n";
}

// A log query starts with its stream selector; anything else (a function, a number, a
// parenthesis) is a metric query.
const isMetric = (q) => q.replace(/#[^\n]*/g, "").trim() !== "" && !/^\s*\{/.test(q.replace(/#[^\n]*/g, ""));
const hasParser = (q) => /\|\s*(json|logfmt|regexp|pattern|unpack)\b/.test(q);
const lqlString = (s) => '"' + String(s).replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n") + '"';
const labelName = (s) => String(s).replace(/[^A-Za-z0-9_]/g, "_").replace(/^(\d)/, "_$1");

// The query with a stream matcher added to its first selector.
function withMatcher(q, name, op, value) {
  const m = /\{([^}]*)\}/.exec(q);
  const matcher = `${name}${op}${lqlString(value)}`;
  if (!m) return `{${matcher}}`;
  const inner = m[1].trim();
  const next = inner ? `${inner}, ${matcher}` : matcher;
  return q.slice(0, m.index) + "{" + next + "}" + q.slice(m.index + m[0].length);
}

// The query with pipeline stages added to its log part: at the end of a log query, before the
// range of a metric query's first range aggregation.
function withStages(q, stages) {
  const r = /\[\s*[\d.]+[a-z]+\s*(?::[^\]]*)?\]/.exec(q);
  if (isMetric(q) && r) return q.slice(0, r.index).replace(/\s*$/, "") + " " + stages + " " + q.slice(r.index);
  return q.replace(/\s*$/, "") + " " + stages;
}

// ---------------------------------------------------------------------------------------------
// Editor: highlighting overlay, autocompletion, error marker

const editor = { mark: null, items: [], sel: 0, replaceFrom: 0, replaceTo: 0, timer: 0 };

function renderEditor() {
  const q = $("q");
  $("hl").innerHTML = highlight(q.value, editor.mark);
  q.style.height = "auto";
  q.style.height = Math.min(q.scrollHeight + 2, 200) + "px";
}

function setQuery(v) {
  $("q").value = v;
  editor.mark = null;
  renderEditor();
}

function caretCoords() {
  const q = $("q");
  const pre = $("hl");
  const before = q.value.slice(0, q.selectionStart);
  pre.innerHTML = esc(before) + '<span id="caret">\u200b</span>';
  const c = $("caret");
  const box = { left: c.offsetLeft, top: c.offsetTop + ROW };
  renderEditor();
  return box;
}

// What to complete at the caret: { kind, prefix, from, to, label? }.
function completionContext() {
  const q = $("q");
  const text = q.value;
  const pos = q.selectionStart;
  const before = text.slice(0, pos);
  const openBrace = before.lastIndexOf("{"), closeBrace = before.lastIndexOf("}");
  if (openBrace > closeBrace) {
    const inSel = before.slice(openBrace + 1);
    const val = /([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)$/.exec(inSel);
    if (val) return { kind: "value", label: val[1], prefix: val[3], from: pos - val[3].length, to: endOfWord(text, pos, /[^"]/) };
    if (/([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*$/.test(inSel)) {
      const l = /([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*$/.exec(inSel)[1];
      return { kind: "value", label: l, prefix: "", from: pos, to: pos, quote: true };
    }
    const name = /(?:^|[,{\s])([A-Za-z_][A-Za-z0-9_]*)?$/.exec(inSel);
    if (name) { const p = name[1] || ""; return { kind: "label", prefix: p, from: pos - p.length, to: endOfWord(text, pos, /[A-Za-z0-9_]/) }; }
    return null;
  }
  const stage = /\|\s*([A-Za-z_]*)$/.exec(before);
  if (stage) return { kind: "stage", prefix: stage[1], from: pos - stage[1].length, to: endOfWord(text, pos, /[A-Za-z0-9_]/) };
  const word = /(?:^|[\s(,])([A-Za-z_][A-Za-z0-9_]*)$/.exec(before);
  if (word && !/\)\s*(by|without)\s*\([^)]*$/.test(before)) {
    return { kind: "func", prefix: word[1], from: pos - word[1].length, to: endOfWord(text, pos, /[A-Za-z0-9_]/) };
  }
  const group = /(?:by|without)\s*\(([^)]*?)([A-Za-z_][A-Za-z0-9_]*)?$/.exec(before);
  if (group) { const p = group[2] || ""; return { kind: "label", prefix: p, from: pos - p.length, to: pos }; }
  if (/(^|\s)$/.test(before) && before.trim() === "") return { kind: "start", prefix: "", from: pos, to: pos };
  return null;
}

function endOfWord(text, pos, re) {
  let e = pos;
  while (e < text.length && re.test(text[e])) e++;
  return e;
}

async function labelNames() {
  if (state.labelsCache) return state.labelsCache;
  const { from, to } = rangeMs();
  const r = await api("/loki/api/v1/labels", { start: nsOf(from), end: nsOf(to) });
  state.labelsCache = r.data || [];
  return state.labelsCache;
}

async function labelValues(name) {
  if (state.valuesCache.has(name)) return state.valuesCache.get(name);
  const { from, to } = rangeMs();
  const r = await api(`/loki/api/v1/label/${encodeURIComponent(name)}/values`, { start: nsOf(from), end: nsOf(to) });
  state.valuesCache.set(name, r.data || []);
  return r.data || [];
}

async function complete(explicit) {
  const ctx = completionContext();
  if (!ctx || (!explicit && ctx.kind === "func" && ctx.prefix.length < 2)) return closeAc();
  let items = [];
  try {
    if (ctx.kind === "label") items = (await labelNames()).map((l) => [l, "label", l]);
    else if (ctx.kind === "value") {
      items = (await labelValues(ctx.label)).map((v) => {
        const e = v.replace(/\\/g, "\\\\").replace(/"/g, '\\"');
        return [v, "value", ctx.quote ? `"${e}"` : e];
      });
    } else if (ctx.kind === "stage") items = STAGES.map(([s, d]) => [s, d, s + " "]);
    else if (ctx.kind === "func") items = FUNCS.map(([f, d]) => [f, d || "function", f + "("]);
    else if (ctx.kind === "start") items = [["{", "stream selector", "{"], ...FUNCS.slice(0, 4).map(([f, d]) => [f, d, f + "("])];
  } catch (e) {
    return closeAc();
  }
  const p = ctx.prefix.toLowerCase();
  items = items.filter(([s]) => s.toLowerCase().startsWith(p) && (s !== ctx.prefix || ctx.kind === "value"))
    .concat(ctx.kind === "value" && p ? items.filter(([s]) => !s.toLowerCase().startsWith(p) && s.toLowerCase().includes(p)) : [])
    .slice(0, 200);
  if (!items.length) return closeAc();
  editor.items = items;
  editor.sel = 0;
  editor.replaceFrom = ctx.from;
  editor.replaceTo = ctx.to;
  const ul = $("ac");
  ul.innerHTML = items.map(([s, d], i) => `<li data-i="${i}" class="${i === 0 ? "sel" : ""}"><span>${esc(s)}</span><small>${esc(d)}</small></li>`).join("");
  const c = caretCoords();
  ul.style.left = Math.min(c.left, $("editor").clientWidth - 220) + "px";
  ul.style.top = c.top + 8 + "px";
  ul.hidden = false;
}

function closeAc() { $("ac").hidden = true; editor.items = []; }

function acceptAc(i) {
  const it = editor.items[i];
  if (!it) return;
  const q = $("q");
  const ins = it[2];
  q.value = q.value.slice(0, editor.replaceFrom) + ins + q.value.slice(editor.replaceTo);
  const caret = editor.replaceFrom + ins.length;
  q.setSelectionRange(caret, caret);
  closeAc();
  editor.mark = null;
  renderEditor();
  q.focus();
  if (ins.endsWith("{") || ins.endsWith("= ") || ins.endsWith(" ")) setTimeout(() => complete(true), 0);
}

function moveAc(d) {
  const lis = $("ac").children;
  if (!lis.length) return;
  lis[editor.sel].classList.remove("sel");
  editor.sel = (editor.sel + d + lis.length) % lis.length;
  lis[editor.sel].classList.add("sel");
  lis[editor.sel].scrollIntoView({ block: "nearest" });
}

// ---------------------------------------------------------------------------------------------
// Errors

function showError(e, fromQuery) {
  if (e && e.name === "AbortError") return;
  if (fromQuery) { state.failed = true; $("hist").hidden = true; }
  // Without a tenant the prompt asks for one; the 401 itself is not news.
  if (e instanceof ApiError && e.status === 401 && !$("tenant-pop").hidden) { setStatus(""); return; }
  const msg = e instanceof ApiError ? e.message : String(e && e.message ? e.message : e);
  const box = $("err");
  box.textContent = msg;
  box.hidden = false;
  const pos = /at line (\d+), col (\d+)/.exec(msg);
  if (fromQuery && pos) {
    editor.mark = { line: +pos[1], col: +pos[2] };
    renderEditor();
  }
  setStatus("");
}

function clearError() {
  $("err").hidden = true;
  state.failed = false;
  if (editor.mark) { editor.mark = null; renderEditor(); }
}

function setStatus(s) { $("status").textContent = s; }

// ---------------------------------------------------------------------------------------------
// URL state

function readUrl() {
  const p = new URLSearchParams(location.search);
  const q = p.get("query");
  if (q !== null) state.query = q;
  const from = parseTime(p.get("from")), to = parseTime(p.get("to"));
  const since = p.get("since");
  if (from !== null) state.range = { from, to: to === null ? Date.now() : to };
  else if (since && parseDuration(since)) state.range = { since };
  const view = p.get("view");
  if (["logs", "chart", "table", "timeline"].includes(view)) state.view = view;
  state.id = p.get("id") || "";
  return { run: q !== null && q.trim() !== "", live: p.get("live") === "1", id: state.id };
}

function writeUrl(push) {
  const p = new URLSearchParams();
  if (state.query) p.set("query", state.query);
  if (state.range.since) p.set("since", state.range.since);
  else { p.set("from", isoish(state.range.from)); p.set("to", isoish(state.range.to)); }
  if (state.view !== "logs" && state.view !== "chart") p.set("view", state.view);
  if (state.view === "timeline" && state.id) p.set("id", state.id);
  if (state.tail) p.set("live", "1");
  const url = "/?" + p.toString().replace(/%2C/g, ",").replace(/%3A/g, ":");
  if (url === location.pathname + location.search) return;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

// ---------------------------------------------------------------------------------------------
// Views

function setView(v) {
  state.view = v;
  for (const b of document.querySelectorAll("#tabs > button")) b.classList.toggle("cur", b.dataset.view === v);
  const metric = isMetric(state.query);
  $("logs").hidden = v !== "logs";
  updateMore();
  $("hist").hidden = v !== "logs" || metric || !state.query || state.tail !== null || state.failed;
  $("chart").hidden = v !== "chart";
  $("table").hidden = v !== "table";
  $("timeline").hidden = v !== "timeline";
  $("tailbar").hidden = !state.tail;
  updateEmpty();
  if (v === "logs") layoutRows(true);
  if (v === "chart") drawChart();
  if (v === "table") drawTable();
  if (v === "logs" && !$("hist").hidden) drawHist();
}

function updateEmpty() {
  const e = $("empty");
  let msg = "";
  if (state.failed) { e.hidden = true; return; }
  if (state.view === "logs" && !state.entries.length) msg = state.query ? (state.running ? "" : state.tail ? "Waiting for lines…" : "No lines in this range.") : "Type a LogQL query and press Ctrl-Enter.";
  if ((state.view === "chart" || state.view === "table") && !state.series.length && !state.running) msg = isMetric(state.query) ? "No series in this range." : "Metric queries (rate, count_over_time, sum by …) draw here.";
  if (state.view === "timeline" && !state.timeline && !state.running) msg = "Click a request or trace ID in a line, or type one above.";
  e.textContent = msg;
  e.hidden = !msg;
}

// ---------------------------------------------------------------------------------------------
// Running a query

let runAbort = null;

function run(opts = {}) {
  const q = $("q").value.trim();
  closeAc();
  clearError();
  stopTail(true);
  state.query = q;
  if (!q) { setView("logs"); return; }
  state.gen++;
  if (runAbort) runAbort.abort();
  runAbort = new AbortController();
  const { from, to } = rangeMs();
  state.resolved = { start: nsOf(from), end: nsOf(to) + 1n };
  $("range-btn").textContent = rangeLabel();
  writeUrl(opts.push !== false);
  if (isMetric(q)) {
    if (state.view === "logs" || state.view === "timeline") state.view = "chart";
    runMetric(q, state.gen, runAbort.signal);
  } else {
    if (state.view !== "logs") state.view = "logs";
    runLogs(q, state.gen, runAbort.signal);
    runHist(q, state.gen, runAbort.signal);
  }
  for (const b of document.querySelectorAll("#tabs > button")) {
    const v = b.dataset.view;
    b.disabled = (v === "chart" || v === "table") ? !isMetric(q) : v === "logs" ? isMetric(q) : false;
  }
  setView(state.view);
}

function resetEntries() {
  state.entries = [];
  state.seen = new Set();
  state.open = new Set();
  state.heights = null;
  state.offsets = null;
  state.oldest = null;
  state.exhausted = false;
  state.moreNote = "";
  state.series = [];
  $("logs").scrollTop = 0;
}

// Entries of a streams answer, newest first; `fresh` marks those not already shown.
function entriesOf(result) {
  const out = [];
  for (const s of result) {
    const labels = s.stream || {};
    for (const v of s.values || []) {
      const [tsStr, line, meta] = v;
      const key = tsStr + "\u0000" + line + "\u0000" + JSON.stringify(labels);
      out.push({ tsStr, ts: BigInt(tsStr), ms: Number(BigInt(tsStr) / 1000000n), line, labels,
        sm: (meta && meta.structuredMetadata) || {}, parsed: (meta && meta.parsed) || {}, key, level: null });
    }
  }
  out.sort((a, b) => (a.ts < b.ts ? 1 : a.ts > b.ts ? -1 : 0));
  return out;
}

async function runLogs(q, gen, signal) {
  resetEntries();
  state.running = true;
  layoutRows(true);
  setStatus("running…");
  const started = performance.now();
  try {
    await fetchPage(q, gen, signal, PAGE_FIRST, state.resolved.end);
    if (gen !== state.gen) return;
    setStatus(statusLine(started));
    // The first lines are on screen; the rest of the first page follows right away.
    if (!state.exhausted) await fetchPage(q, gen, signal, PAGE - PAGE_FIRST, state.oldest + 1n);
    if (gen !== state.gen) return;
    setStatus(statusLine(started));
  } catch (e) {
    if (gen === state.gen) showError(e, true);
  } finally {
    if (gen === state.gen) { state.running = false; setView(state.view); }
  }
}

function statusLine(started) {
  const n = state.entries.length;
  return `${n.toLocaleString()} line${n === 1 ? "" : "s"}${state.exhausted ? "" : "+"} · ${Math.round(performance.now() - started)} ms`;
}

async function fetchPage(q, gen, signal, want, end) {
  // A page ends just past the oldest line shown, so lines sharing its timestamp are not
  // skipped; those already shown come again and are asked for on top of `want`.
  let overlap = 0;
  for (let i = state.entries.length - 1; i >= 0 && state.entries[i].ts === state.oldest; i--) overlap++;
  const limit = want + overlap;
  const r = await api("/loki/api/v1/query_range", {
    query: q, start: state.resolved.start, end, limit, direction: "backward",
  }, signal);
  if (gen !== state.gen) return;
  const answered = state.answeredAt;
  const d = r.data || {};
  if (d.resultType !== "streams") throw new ApiError(0, "expected lines, got " + d.resultType);
  const got = entriesOf(d.result || []);
  let added = 0;
  for (const e of got) {
    if (state.seen.has(e.key)) continue;
    state.seen.add(e.key);
    state.entries.push(e);
    added++;
  }
  // An answer holds at most `limit` entries: fewer means the range is read to its start.
  if (got.length < limit) state.exhausted = true;
  if (got.length) state.oldest = got[got.length - 1].ts;
  if (!added && got.length) {
    // A page made only of lines already shown (many at one timestamp): step past them.
    state.oldest = state.oldest - 1n;
  }
  state.offsets = null;
  state.running = false;
  layoutRows(true);
  updateMore();
  updateEmpty();
  // From the server's answer (its last byte) to the lines in the page, then to the frame
  // that shows them, as the page measures it.
  performance.measure("sawmill:answer-to-rows", { start: answered, end: performance.now() });
  requestAnimationFrame(() => setTimeout(() => performance.measure("sawmill:answer-to-lines", { start: answered, end: performance.now() }), 0));
}

function updateMore() {
  const more = $("more");
  $("older").disabled = state.exhausted;
  $("more-note").textContent = state.exhausted ? "start of the range reached" : `showing ${state.entries.length.toLocaleString()} lines, newest first`;
  more.hidden = state.view !== "logs" || !state.entries.length || state.tail !== null;
}

async function older() {
  if (state.exhausted || state.oldest === null || state.running) return;
  const gen = state.gen;
  state.running = true;
  $("older").disabled = true;
  const started = performance.now();
  try {
    await fetchPage(state.query, gen, runAbort ? runAbort.signal : undefined, PAGE, state.oldest + 1n);
    if (gen === state.gen) setStatus(statusLine(started));
  } catch (e) {
    if (gen === state.gen) showError(e, true);
  } finally {
    if (gen === state.gen) { state.running = false; updateMore(); }
  }
}

// ---------------------------------------------------------------------------------------------
// Log rows: virtualized (only the rows in view are in the DOM)

function levelOf(e) {
  if (e.level) return e.level;
  let v = e.labels.level || e.labels.detected_level || e.labels.severity || e.sm.level || e.parsed.level || e.parsed.severity;
  if (!v) {
    const m = /(?:^|[\s{,"])(?:level|lvl|severity)"?\s*[:=]\s*"?([A-Za-z]+)/i.exec(e.line);
    v = m ? m[1] : /\b(ERROR|WARN(?:ING)?|INFO|DEBUG|FATAL)\b/.exec(e.line)?.[1] || "";
  }
  v = String(v).toLowerCase();
  v = LEVEL_ALIASES[v] || v;
  e.level = LEVELS.includes(v) ? v : v ? "unknown" : "";
  return e.level;
}

function offsetsOf() {
  if (state.offsets) return state.offsets;
  const n = state.entries.length;
  const off = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) off[i + 1] = off[i] + ROW + (state.heights && state.heights.get(state.entries[i].key) || 0);
  state.offsets = off;
  return off;
}

function indexAt(y) {
  const off = offsetsOf();
  let lo = 0, hi = state.entries.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (off[mid + 1] <= y) lo = mid + 1; else hi = mid; }
  return lo;
}

let rowFrame = 0;
function layoutRows(now) {
  if (now) { cancelAnimationFrame(rowFrame); rowFrame = 0; drawRows(); return; }
  if (!rowFrame) rowFrame = requestAnimationFrame(() => { rowFrame = 0; drawRows(); });
}

function drawRows() {
  const box = $("logs"), space = $("logs-space");
  const off = offsetsOf();
  const n = state.entries.length;
  space.style.height = off[n] + "px";
  if (box.hidden) return;
  const top = box.scrollTop, h = box.clientHeight || 600;
  const first = Math.max(0, indexAt(top) - 10);
  const last = Math.min(n, indexAt(top + h) + 11);
  const range = state.resolved ? Number((state.resolved.end - state.resolved.start) / 1000000n) : 0;
  const withDate = range > 86400000;
  const frag = document.createDocumentFragment();
  for (let i = first; i < last; i++) {
    const e = state.entries[i];
    const div = document.createElement("div");
    const lv = levelOf(e);
    div.className = "r" + (lv ? " " + lv : "") + (state.open.has(e.key) ? " open" : "") + (e.fresh ? " new" : "");
    e.fresh = false;
    div.style.top = off[i] + "px";
    div.dataset.i = i;
    div.innerHTML = `<span class="t">${fmtTime(e.ms, withDate)}</span><span class="v">${lv && lv !== "unknown" ? lv : ""}</span><span class="m">${lineHtml(e.line)}</span>`;
    frag.appendChild(div);
    if (state.open.has(e.key)) frag.appendChild(detailsOf(e, i, off[i] + ROW));
  }
  space.replaceChildren(frag);
  // Open rows measured once drawn: their heights feed the offsets.
  let changed = false;
  for (const d of space.querySelectorAll(".d")) {
    const e = state.entries[+d.dataset.i];
    const hgt = d.offsetHeight;
    if (state.heights.get(e.key) !== hgt) { state.heights.set(e.key, hgt); changed = true; }
  }
  if (changed) { state.offsets = null; drawRows(); }
}

// A line's text with request and trace IDs made into links to their timeline.
function lineHtml(line) {
  const s = line.length > 4000 ? line.slice(0, 4000) + "…" : line;
  let out = "", last = 0, m;
  ID_RE.lastIndex = 0;
  while ((m = ID_RE.exec(s))) {
    const id = m[5];
    const at = m.index + m[0].length - id.length;
    out += esc(s.slice(last, at)) + `<a class="id" data-id="${esc(id)}" title="Open this request's timeline">${esc(id)}</a>`;
    last = at + id.length;
  }
  return out + esc(s.slice(last));
}

// Fields of a line read on the page when the query has no parser: JSON (nested keys joined
// with _ as `| json` does) or logfmt.
function detectFields(line) {
  const out = {};
  const t = line.trim();
  if (t.startsWith("{")) {
    try {
      const walk = (o, p) => {
        for (const [k, v] of Object.entries(o)) {
          const name = labelName(p ? p + "_" + k : k);
          if (v && typeof v === "object" && !Array.isArray(v)) walk(v, name);
          else if (!Array.isArray(v)) out[name] = v === null ? "" : String(v);
        }
      };
      walk(JSON.parse(t), "");
      return { fields: out, parser: "json" };
    } catch (e) { /* not JSON: try logfmt */ }
  }
  const re = /([A-Za-z_][A-Za-z0-9_.\-]*)=("(?:[^"\\]|\\.)*"|\S*)/g;
  let m, n = 0;
  while ((m = re.exec(t))) {
    let v = m[2];
    if (v.startsWith('"')) { try { v = JSON.parse(v); } catch (e) { v = v.slice(1, -1); } }
    out[labelName(m[1])] = v;
    n++;
  }
  return n ? { fields: out, parser: "logfmt" } : { fields: {}, parser: null };
}

function detailsOf(e, i, top) {
  const d = document.createElement("div");
  d.className = "d";
  d.style.top = top + "px";
  d.dataset.i = i;
  const section = (title, obj, kind) => {
    const keys = Object.keys(obj).sort();
    if (!keys.length) return "";
    return `<h4>${title}</h4><div class="kv">` + keys.map((k) => {
      const v = obj[k];
      const isId = ID_FIELDS.includes(k.toLowerCase());
      const val = isId ? `<a class="id" data-id="${esc(v)}">${esc(v)}</a>` : esc(v);
      return `<button data-f="${kind}" data-op="=" data-k="${esc(k)}" data-v="${esc(v)}" title="Only lines with ${esc(k)}=${esc(v)}">⊕</button>` +
        `<button data-f="${kind}" data-op="!=" data-k="${esc(k)}" data-v="${esc(v)}" title="Leave out lines with ${esc(k)}=${esc(v)}">⊖</button>` +
        `<span class="k">${esc(k)}</span><span class="val" data-f="${kind}" data-op="=" data-k="${esc(k)}" data-v="${esc(v)}">${val}</span>`;
    }).join("") + "</div>";
  };
  let parsed = e.parsed, parsedKind = "parsed", title = "Parsed fields";
  if (!Object.keys(parsed).length) {
    const det = detectFields(e.line);
    parsed = det.fields;
    parsedKind = det.parser || "parsed";
    title = det.parser ? `Fields (${det.parser})` : "Parsed fields";
  }
  d.innerHTML = `<div class="full">${lineHtml(e.line)}</div>` +
    `<div class="kv-meta">${esc(new Date(e.ms).toISOString())} · ${esc(e.tsStr)} ns</div>` +
    section("Stream labels", e.labels, "label") + section("Structured metadata", e.sm, "meta") + section(title, parsed, parsedKind);
  return d;
}

// A field clicked: a filter added to the query, which runs again.
function addFilter(kind, op, k, v) {
  let q = $("q").value.trim() || state.query;
  if (kind === "label") q = withMatcher(q, k, op, v);
  else if (kind === "json" || kind === "logfmt") {
    const stages = (hasParser(q) ? "" : `| ${kind} `) + `| ${k}${op}${lqlString(v)}`;
    q = withStages(q, stages);
  } else q = withStages(q, `| ${k}${op}${lqlString(v)}`);
  setQuery(q);
  run();
}

// ---------------------------------------------------------------------------------------------
// Volume histogram: lines of the query per step, stacked by level; drag to zoom

const COLORS = { error: "--error", warn: "--warn", info: "--info", debug: "--debug", unknown: "--other" };
const cssVar = (n) => getComputedStyle(document.documentElement).getPropertyValue(n).trim();
const hist = { buckets: [], start: 0, end: 0, step: 0, drag: null };

function stepFor(ms, points) {
  const nice = [1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000, 900000, 1800000, 3600000, 7200000,
    10800000, 21600000, 43200000, 86400000, 172800000, 604800000];
  for (const s of nice) if (ms / s <= points) return s;
  return Math.ceil(ms / points / 86400000) * 86400000;
}

async function runHist(q, gen, signal) {
  const { start, end } = state.resolved;
  const ms = Number((end - start) / 1000000n);
  const step = stepFor(ms, 120);
  hist.buckets = [];
  hist.step = step;
  hist.start = Number(start / 1000000n);
  hist.end = Number(end / 1000000n);
  drawHist();
  // Lines of the query itself (its filters included), by the level label or parsed field.
  const mq = `sum by (level) (count_over_time(${q} [${fmtDuration(step)}]))`;
  try {
    const r = await api("/loki/api/v1/query_range", { query: mq, start, end, step: step / 1000 }, signal);
    if (gen !== state.gen) return;
    // Bucket 0 is the step before the range's first whole step (partly inside the range).
    const base = Math.floor(hist.start / step) * step - step;
    const n = Math.ceil((hist.end - base) / step);
    hist.base = base;
    hist.buckets = Array.from({ length: n + 1 }, () => ({}));
    hist.totals = {};
    for (const s of (r.data && r.data.result) || []) {
      let lv = String(s.metric.level || "").toLowerCase();
      lv = LEVEL_ALIASES[lv] || lv;
      if (!LEVELS.includes(lv)) lv = "unknown";
      for (const [t, v] of s.values || []) {
        // A point at t counts the lines of (t - step, t].
        const i = Math.min(n, Math.max(0, Math.round((t * 1000 - step - base) / step)));
        hist.buckets[i][lv] = (hist.buckets[i][lv] || 0) + Number(v);
        hist.totals[lv] = (hist.totals[lv] || 0) + Number(v);
      }
    }
    drawHist();
  } catch (e) {
    // A query the server refuses is reported once, by the lines' request.
    if (e.name !== "AbortError" && gen === state.gen && !state.failed) $("hist-legend").textContent = "volume: " + e.message;
  }
}

function drawHist() {
  const c = $("hist-c");
  if ($("hist").hidden) return;
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth, h = c.clientHeight;
  if (!w) return;
  c.width = w * dpr; c.height = h * dpr;
  const g = c.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const axisH = 16, plotH = h - axisH;
  const span = Math.max(1, hist.end - hist.start);
  const x = (ms) => ((ms - hist.start) / span) * w;
  let max = 0;
  for (const b of hist.buckets) { let s = 0; for (const v of Object.values(b)) s += v; max = Math.max(max, s); }
  const bw = Math.max(1, (hist.step / span) * w - 1);
  for (let i = 0; i < hist.buckets.length; i++) {
    const b = hist.buckets[i];
    const x0 = x(hist.base + i * hist.step);
    let y = plotH;
    for (const lv of LEVELS) {
      const v = b[lv];
      if (!v) continue;
      const bh = (v / max) * (plotH - 4);
      g.fillStyle = cssVar(COLORS[lv]);
      const xa = Math.max(0, x0), xb = Math.min(w, x0 + bw);
      if (xb > xa) g.fillRect(xa, y - bh, xb - xa, bh);
      y -= bh;
    }
  }
  g.fillStyle = cssVar("--muted");
  g.font = "11px system-ui, sans-serif";
  const withDate = span > 86400000;
  for (const t of timeTicks(hist.start, hist.end, Math.max(2, Math.floor(w / 110)))) {
    const tx = x(t);
    g.fillRect(tx, plotH, 1, 3);
    const label = withDate ? fmtTime(t, true).slice(5, 16) : fmtTime(t).slice(0, span < 300000 ? 8 : 5);
    g.fillText(label, Math.min(w - 40, Math.max(0, tx - 14)), h - 3);
  }
  if (hist.drag && Math.abs(hist.drag.x1 - hist.drag.x0) > 2) {
    g.fillStyle = cssVar("--sel");
    g.fillRect(Math.min(hist.drag.x0, hist.drag.x1), 0, Math.abs(hist.drag.x1 - hist.drag.x0), plotH);
  }
  const totals = hist.totals || {};
  $("hist-legend").innerHTML = LEVELS.filter((l) => totals[l]).map((l) => `<span><i class="c-${l}"></i>${l} ${totals[l].toLocaleString()}</span>`).join("") +
    (hist.buckets.length && !Object.keys(totals).length ? "<span>no lines</span>" : "") +
    (max > 0 ? `<span>most ${compact(max)} per ${fmtDuration(hist.step)}</span>` : "");
  $("zoom-out").hidden = !state.zoomStack.length;
}

function timeTicks(from, to, n) {
  const step = stepFor(to - from, n);
  const out = [];
  const tz = new Date(from).getTimezoneOffset() * 60000;
  for (let t = Math.ceil((from - tz) / step) * step + tz; t <= to; t += step) out.push(t);
  return out;
}

const compact = (v) => v >= 1e9 ? (v / 1e9).toFixed(1) + "G" : v >= 1e6 ? (v / 1e6).toFixed(1) + "M" : v >= 1e4 ? (v / 1e3).toFixed(0) + "k" :
  Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(3);

function zoomTo(fromMs, toMs) {
  state.zoomStack.push(state.range);
  state.range = { from: Math.floor(fromMs), to: Math.ceil(toMs) };
  run();
}

// ---------------------------------------------------------------------------------------------
// Metric queries: a line chart with a legend, or a table

async function runMetric(q, gen, signal) {
  resetEntries();
  state.running = true;
  setStatus("running…");
  const started = performance.now();
  const { start, end } = state.resolved;
  const ms = Number((end - start) / 1000000n);
  const step = stepFor(ms, 250);
  try {
    const r = await api("/loki/api/v1/query_range", { query: q, start, end, step: step / 1000 }, signal);
    if (gen !== state.gen) return;
    performance.mark("sawmill:answer");
    const d = r.data || {};
    if (d.resultType === "streams") throw new ApiError(0, "expected a metric answer, got lines");
    state.hidden = new Set();
    state.series = (d.result || []).map((s, i) => ({
      name: seriesName(s.metric), metric: s.metric,
      points: d.resultType === "matrix" ? s.values.map(([t, v]) => [t * 1000, Number(v)]) : [[s.value[0] * 1000, Number(s.value[1])]],
      color: levelColor(s.metric) || palette(i),
    }));
    state.chartRange = [Number(start / 1000000n), Number(end / 1000000n)];
    setStatus(`${state.series.length} series · ${Math.round(performance.now() - started)} ms`);
    state.running = false;
    setView(state.view);
  } catch (e) {
    if (gen === state.gen) { showError(e, true); state.running = false; setView(state.view); }
  }
}

function seriesName(m) {
  const keys = Object.keys(m || {});
  if (!keys.length) return "{}";
  return "{" + keys.map((k) => `${k}="${m[k]}"`).join(", ") + "}";
}

// A series named only by a level gets that level's colour (errors red, as in the histogram).
function levelColor(m) {
  const keys = Object.keys(m || {});
  if (keys.length !== 1 || !/^(level|detected_level|severity)$/.test(keys[0])) return null;
  const lv = LEVEL_ALIASES[String(m[keys[0]]).toLowerCase()] || String(m[keys[0]]).toLowerCase();
  return LEVELS.includes(lv) ? cssVar(COLORS[lv]) : null;
}

function palette(i) {
  const hues = [212, 145, 28, 0, 270, 185, 320, 55, 240, 100];
  return `hsl(${hues[i % hues.length]} 65% ${i >= hues.length ? 40 : 52}%)`;
}

function drawChart() {
  const c = $("chart-c");
  if ($("chart").hidden) return;
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth, h = c.clientHeight;
  if (!w || !h) return;
  c.width = w * dpr; c.height = h * dpr;
  const g = c.getContext("2d");
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const shown = state.series.filter((s) => !state.hidden.has(s.name));
  const [t0, t1] = state.chartRange || [0, 1];
  let lo = Infinity, hi = -Infinity;
  for (const s of shown) for (const [, v] of s.points) { if (isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } }
  if (lo === Infinity) { lo = 0; hi = 1; }
  if (lo > 0) lo = 0;
  if (hi === lo) hi = lo + 1;
  const yt = niceTicks(lo, hi, Math.max(2, Math.floor(h / 50)));
  hi = Math.max(hi, yt[yt.length - 1]);
  const left = 8 + Math.max(...yt.map((v) => g.measureText(compact(v)).width)) + 8, bottom = 20, top = 8, right = 10;
  const X = (t) => left + ((t - t0) / Math.max(1, t1 - t0)) * (w - left - right);
  const Y = (v) => top + (1 - (v - lo) / (hi - lo)) * (h - top - bottom);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = cssVar("--muted");
  g.strokeStyle = cssVar("--line");
  g.lineWidth = 1;
  for (const v of yt) {
    const y = Math.round(Y(v)) + 0.5;
    g.beginPath(); g.moveTo(left, y); g.lineTo(w - right, y); g.stroke();
    g.fillText(compact(v), 6, y + 4);
  }
  const span = t1 - t0;
  for (const t of timeTicks(t0, t1, Math.max(2, Math.floor(w / 110)))) {
    g.fillText(span > 86400000 ? fmtTime(t, true).slice(5, 16) : fmtTime(t).slice(0, span < 300000 ? 8 : 5), X(t) - 14, h - 5);
  }
  for (const s of shown) {
    g.strokeStyle = s.color;
    g.fillStyle = s.color;
    g.lineWidth = 1.6;
    g.beginPath();
    let prev = null;
    for (const [t, v] of s.points) {
      if (!isFinite(v)) { prev = null; continue; }
      // A gap of more than two steps is drawn as a gap, not a slope.
      if (prev !== null && t - prev > 2.5 * (s.points.length > 1 ? (s.points[1][0] - s.points[0][0]) : Infinity)) g.moveTo(X(t), Y(v));
      else if (prev === null) g.moveTo(X(t), Y(v));
      else g.lineTo(X(t), Y(v));
      prev = t;
    }
    g.stroke();
    if (s.points.length === 1) { g.beginPath(); g.arc(X(s.points[0][0]), Y(s.points[0][1]), 3, 0, 7); g.fill(); }
  }
  $("chart-legend").innerHTML = state.series.map((s, i) => `<span data-s="${i}" class="${state.hidden.has(s.name) ? "off" : ""}" title="Click: show or hide"><i data-color="${s.color}"></i>${esc(s.name)}</span>`).join("");
  paintSwatches($("chart-legend"));
}

// Series colours set through the DOM (the page's policy allows no inline style attributes).
function paintSwatches(root) {
  for (const i of root.querySelectorAll("i[data-color]")) i.style.background = i.dataset.color;
}

function niceTicks(lo, hi, n) {
  const raw = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 0.999; v += step) out.push(+v.toPrecision(12));
  return out;
}

function drawTable() {
  const el = $("table");
  if (el.hidden) return;
  if (!state.series.length) { el.innerHTML = ""; return; }
  const rows = state.series.map((s) => {
    const vs = s.points.map((p) => p[1]).filter(isFinite);
    const last = s.points[s.points.length - 1];
    const sum = vs.reduce((a, b) => a + b, 0);
    return `<tr><td><i class="sw" data-color="${s.color}"></i> ${esc(s.name)}</td>` +
      `<td class="num">${compact(last[1])}</td><td class="num">${vs.length ? compact(Math.min(...vs)) : ""}</td>` +
      `<td class="num">${vs.length ? compact(Math.max(...vs)) : ""}</td><td class="num">${vs.length ? compact(sum / vs.length) : ""}</td>` +
      `<td class="num">${s.points.length}</td><td>${fmtTime(last[0], true)}</td></tr>`;
  });
  el.innerHTML = `<table><thead><tr><th>series</th><th class="num">last</th><th class="num">min</th><th class="num">max</th><th class="num">mean</th><th class="num">points</th><th>last at</th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
  paintSwatches(el);
}

// ---------------------------------------------------------------------------------------------
// Live tail over the WebSocket

function startTail() {
  const q = $("q").value.trim();
  if (!q) return;
  if (isMetric(q)) { showError(new ApiError(400, "live tail needs a log query: a stream selector with optional filters and parsers")); return; }
  clearError();
  stopTail(true);
  state.query = q;
  state.gen++;
  if (runAbort) runAbort.abort();
  resetEntries();
  state.exhausted = true;
  state.view = "logs";
  const { from, to } = rangeMs();
  state.resolved = { start: nsOf(Math.max(from, to - 3600000)), end: nsOf(to) };
  const p = new URLSearchParams({ query: q, limit: "100", start: String(nsOf(Date.now() - 3600000)) });
  // Browsers cannot set headers on a WebSocket: the tenant goes as a parameter.
  if (state.tenant) p.set("X-Scope-OrgID", state.tenant);
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/loki/api/v1/tail?${p}`);
  const t = { ws, paused: false, held: [], dropped: 0, received: 0, gen: state.gen, closed: false };
  state.tail = t;
  ws.onmessage = (ev) => {
    if (state.tail !== t) return;
    let f;
    try { f = JSON.parse(ev.data); } catch (e) { return; }
    if (f.dropped_entries) t.dropped += f.dropped_entries.length;
    const got = entriesOf(f.streams || []);
    t.received += got.length;
    if (t.paused) {
      for (const e of got) { if (t.held.length < PAUSE_MAX) t.held.push(e); else t.dropped++; }
    } else addTailEntries(got);
    tailStatus();
  };
  ws.onclose = (ev) => {
    if (state.tail !== t) return;
    t.closed = true;
    if (ev.code !== 1000 && ev.code !== 1001 && ev.reason) showError(new ApiError(ev.code, ev.reason), true);
    else if (ev.code === 1006 && !t.received) showError(new ApiError(0, "the live tail could not connect (or was refused): run the query to see the server's message"));
    tailStatus();
  };
  ws.onerror = () => {};
  $("live").classList.add("on");
  writeUrl(true);
  setView("logs");
  tailStatus();
}

function addTailEntries(got) {
  if (!got.length) return;
  for (const e of got) e.fresh = true;
  // Frames come oldest first; the view is newest first.
  const fresh = got.filter((e) => !state.seen.has(e.key));
  for (const e of fresh) state.seen.add(e.key);
  state.entries = fresh.concat(state.entries);
  state.entries.sort((a, b) => (a.ts < b.ts ? 1 : a.ts > b.ts ? -1 : 0));
  if (state.entries.length > LIVE_MAX) {
    for (const e of state.entries.splice(LIVE_MAX)) { state.seen.delete(e.key); state.open.delete(e.key); }
  }
  state.offsets = null;
  // Keep the lines being read still: move down by what was added above them.
  const box = $("logs");
  if (box.scrollTop > 0) box.scrollTop += fresh.length * ROW;
  layoutRows();
  updateEmpty();
}

function tailStatus() {
  const t = state.tail;
  if (!t) return;
  const s = $("tail-state");
  s.className = t.closed ? "closed" : t.paused ? "paused" : "";
  s.textContent = t.closed ? "Live tail stopped" : t.paused ? `Paused · ${t.held.length.toLocaleString()} held` : "Live";
  $("tail-pause").textContent = t.paused ? "Resume" : "Pause";
  $("tail-pause").disabled = t.closed;
  const dr = $("tail-dropped");
  dr.textContent = `${t.dropped.toLocaleString()} dropped`;
  dr.className = t.dropped ? "some" : "";
  dr.title = "Lines the server could not send in time, and lines past what a pause holds";
  setStatus(`${state.entries.length.toLocaleString()} lines · ${t.received.toLocaleString()} received`);
}

function togglePause() {
  const t = state.tail;
  if (!t) return;
  t.paused = !t.paused;
  if (!t.paused) { const held = t.held; t.held = []; addTailEntries(held); }
  tailStatus();
}

function stopTail(quiet) {
  const t = state.tail;
  if (!t) return;
  state.tail = null;
  try { t.ws.close(1000); } catch (e) { /* already closed */ }
  $("live").classList.remove("on");
  if (!quiet) { writeUrl(false); setView(state.view); }
}

// ---------------------------------------------------------------------------------------------
// A request's timeline: every line of one request or trace ID across services

async function openTimeline(id, nearMs) {
  id = String(id || "").trim();
  if (!id) return;
  stopTail(true);
  clearError();
  state.gen++;
  const gen = state.gen;
  state.id = id;
  state.view = "timeline";
  state.timeline = null;
  state.running = true;
  $("idin").value = id;
  for (const b of document.querySelectorAll("#tabs > button")) if (b.dataset.view === "timeline") b.disabled = false;
  writeUrl(true);
  setView("timeline");
  $("timeline").innerHTML = "";
  setStatus("following " + id + "…");
  const params = { id };
  if (nearMs) { params.start = nsOf(nearMs - 3600000); params.end = nsOf(nearMs + 3600000); }
  else if (!state.range.since || parseDuration(state.range.since) > 86400000) {
    const { from, to } = rangeMs();
    params.start = nsOf(from); params.end = nsOf(to);
  }
  const started = performance.now();
  try {
    const r = await api("/sawmill/api/v1/correlate", params);
    if (gen !== state.gen) return;
    state.timeline = r.data;
    drawTimeline();
    setStatus(`${r.data.entries.length} lines · ${r.data.summary.services.length} services · ${Math.round(performance.now() - started)} ms`);
  } catch (e) {
    if (gen === state.gen) showError(e);
  } finally {
    if (gen === state.gen) { state.running = false; updateEmpty(); }
  }
}

const isBad = (lv) => ["error", "fatal", "critical", "crit", "panic", "err"].includes(String(lv || "").toLowerCase());

function messageOf(line) {
  const d = detectFields(line);
  return d.fields.msg || d.fields.message || line;
}

function fmtOffset(ms) {
  if (ms < 1) return "+" + (ms * 1000).toFixed(0) + " µs";
  if (ms < 1000) return "+" + +ms.toFixed(ms < 10 ? 2 : 1) + " ms";
  return "+" + +(ms / 1000).toFixed(3) + " s";
}

function drawTimeline() {
  const el = $("timeline");
  const d = state.timeline;
  if (!d) return;
  const entries = d.entries || [];
  if (!entries.length) {
    el.innerHTML = `<h3>${esc(d.id)}</h3><div class="sum">No lines carry this ID in the searched range.</div>`;
    return;
  }
  const t0 = BigInt(entries[0].timestamp);
  const offs = entries.map((e) => Number(BigInt(e.timestamp) - t0) / 1e6);
  const total = Math.max(offs[offs.length - 1], 0.001);
  const lanes = [];
  for (const e of entries) { const s = e.service || "(no service)"; if (!lanes.includes(s)) lanes.push(s); }
  const laneH = 28, labelW = Math.min(200, 16 + Math.max(...lanes.map((l) => l.length)) * 7.5), W = Math.max(600, el.clientWidth - 30);
  const axisH = 22, H = axisH + lanes.length * laneH + 6;
  const X = (ms) => labelW + (ms / total) * (W - labelW - 16);
  let svg = `<svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="Timeline of ${esc(d.id)}">`;
  for (let i = 0; i <= 5; i++) {
    const ms = (total * i) / 5, x = X(ms);
    svg += `<line class="grid" x1="${x}" x2="${x}" y1="${axisH - 4}" y2="${H}"/><text class="axis" x="${Math.min(x, W - 60)}" y="12">${esc(fmtOffset(ms))}</text>`;
  }
  lanes.forEach((lane, li) => {
    const y = axisH + li * laneH;
    const idx = entries.map((e, i) => i).filter((i) => (entries[i].service || "(no service)") === lane);
    const a = offs[idx[0]], b = offs[idx[idx.length - 1]];
    const bad = idx.some((i) => isBad(entries[i].level));
    svg += `<text x="4" y="${y + 18}">${esc(lane)}</text>`;
    if (idx.length > 1) svg += `<rect class="span${bad ? " bad" : ""}" x="${X(a) - 3}" y="${y + 6}" width="${Math.max(6, X(b) - X(a) + 6)}" height="${laneH - 12}"><title>${esc(lane)}: ${esc(fmtOffset(a))} to ${esc(fmtOffset(b))}, ${idx.length} lines</title></rect>`;
    for (const i of idx) {
      const lv = String(entries[i].level || "").toLowerCase();
      svg += `<circle class="${isBad(lv) ? "bad" : lv.startsWith("warn") ? "warn" : ""}" cx="${X(offs[i])}" cy="${y + laneH / 2}" r="4.5"><title>${esc(fmtOffset(offs[i]))} ${esc(lane)} ${esc(lv)}: ${esc(messageOf(entries[i].line))}</title></circle>`;
    }
  });
  svg += "</svg>";
  const s = d.summary;
  const levels = Object.entries(s.levels || {}).map(([k, v]) => `${v} ${k}`).join(", ");
  const rows = entries.map((e, i) => {
    const bad = isBad(e.level);
    return `<tr class="${bad ? "bad" : ""}"><td class="num">${esc(fmtOffset(offs[i]))}</td><td>${esc(fmtTime(Number(BigInt(e.timestamp) / 1000000n)))}</td>` +
      `<td>${esc(e.service || "")}</td><td>${esc(e.level || "")}</td><td title="${esc(e.line)}">${esc(messageOf(e.line))}</td></tr>`;
  }).join("");
  el.innerHTML = `<h3>Request ${esc(d.id)}</h3><div class="sum">${entries.length} lines · ${s.services.length} service${s.services.length === 1 ? "" : "s"} · ` +
    `${esc(fmtOffset(s.duration_seconds * 1000).slice(1))} from first to last line · ${esc(levels)}${d.truncated ? " · truncated (more lines than the limit)" : ""}</div>` +
    svg + `<table><thead><tr><th class="num">offset</th><th>time</th><th>service</th><th>level</th><th>message</th></tr></thead><tbody>${rows}</tbody></table>`;
}

// ---------------------------------------------------------------------------------------------
// Tenants

function askTenant(why) {
  state.needsTenant = true;
  const pop = $("tenant-pop");
  if (!pop.hidden) return;
  pop.hidden = false;
  $("tenant-in").value = state.tenant;
  if (why) pop.querySelector("p").textContent = `This server has tenants (${why}). Which tenant's logs?`;
  $("tenant-in").focus();
}

function setTenant(t) {
  state.tenant = t.trim();
  localStorage.setItem("sawmill.tenant", state.tenant);
  $("tenant-pop").hidden = true;
  // Nothing of the previous tenant stays on screen or in the caches.
  state.gen++;
  stopTail(true);
  resetEntries();
  state.timeline = null;
  state.labelsCache = null;
  state.valuesCache = new Map();
  hist.buckets = [];
  hist.totals = {};
  $("timeline").innerHTML = "";
  $("table").innerHTML = "";
  showTenant();
  if (state.query) run({ push: false });
  else setView(state.view);
}

function showTenant() {
  const b = $("tenant");
  b.hidden = !state.needsTenant && !state.tenant;
  b.textContent = "tenant: " + (state.tenant || "?");
}

// ---------------------------------------------------------------------------------------------
// Time range picker

function openRange() {
  const pop = $("range-pop");
  pop.hidden = !pop.hidden;
  if (pop.hidden) return;
  const { from, to } = rangeMs();
  $("from").value = state.range.since ? "now-" + state.range.since : isoish(from);
  $("to").value = state.range.since ? "now" : isoish(to);
  $("range-err").textContent = "";
}

function applyRange() {
  const f = $("from").value.trim(), t = $("to").value.trim() || "now";
  const rel = /^now\s*-\s*(\S+)$/i.exec(f);
  if (rel && /^now$/i.test(t) && parseDuration(rel[1])) state.range = { since: rel[1] };
  else {
    const from = parseTime(f), to = parseTime(t);
    if (from === null || to === null) { $("range-err").textContent = `cannot read ${from === null ? "From" : "To"}: use RFC 3339 or now-1h`; return; }
    if (from >= to) { $("range-err").textContent = "From must be before To"; return; }
    state.range = { from, to };
  }
  state.zoomStack = [];
  $("range-pop").hidden = true;
  $("range-btn").textContent = rangeLabel();
  state.labelsCache = null;
  state.valuesCache = new Map();
  if ($("q").value.trim()) run();
  else writeUrl(false);
}

// ---------------------------------------------------------------------------------------------
// Wiring

function init() {
  const dark = localStorage.getItem("sawmill.theme");
  if (dark === "dark" || (dark === null && matchMedia("(prefers-color-scheme: dark)").matches)) document.documentElement.classList.add("dark");
  $("rel").innerHTML = RELATIVE.map((r) => `<button type="button" data-r="${r}">${r}</button>`).join("");
  const todo = readUrl();
  setQuery(state.query);
  $("range-btn").textContent = rangeLabel();
  showTenant();

  const q = $("q");
  q.addEventListener("input", () => {
    editor.mark = null;
    renderEditor();
    clearTimeout(editor.timer);
    editor.timer = setTimeout(() => complete(false), 60);
  });
  q.addEventListener("scroll", () => { $("hl").scrollTop = q.scrollTop; });
  q.addEventListener("blur", () => setTimeout(closeAc, 150));
  q.addEventListener("keydown", (ev) => {
    const acOpen = !$("ac").hidden;
    if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter") { ev.preventDefault(); run(); return; }
    if (ev.ctrlKey && ev.key === " ") { ev.preventDefault(); complete(true); return; }
    if (acOpen) {
      if (ev.key === "ArrowDown") { ev.preventDefault(); moveAc(1); return; }
      if (ev.key === "ArrowUp") { ev.preventDefault(); moveAc(-1); return; }
      if (ev.key === "Enter" || ev.key === "Tab") { ev.preventDefault(); acceptAc(editor.sel); return; }
      if (ev.key === "Escape") { ev.preventDefault(); closeAc(); return; }
    }
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); run(); }
  });
  $("ac").addEventListener("mousedown", (ev) => {
    const li = ev.target.closest("li");
    if (li) { ev.preventDefault(); acceptAc(+li.dataset.i); }
  });
  $("run").addEventListener("click", () => run());
  $("live").addEventListener("click", () => (state.tail ? stopTail(false) : startTail()));
  $("tail-pause").addEventListener("click", togglePause);
  $("tail-stop").addEventListener("click", () => stopTail(false));
  $("older").addEventListener("click", older);
  $("theme").addEventListener("click", () => {
    const on = document.documentElement.classList.toggle("dark");
    localStorage.setItem("sawmill.theme", on ? "dark" : "light");
    setView(state.view);
  });
  $("range-btn").addEventListener("click", openRange);
  $("rel").addEventListener("click", (ev) => {
    const r = ev.target.dataset.r;
    if (!r) return;
    $("from").value = "now-" + r;
    $("to").value = "now";
    applyRange();
  });
  $("range-apply").addEventListener("click", applyRange);
  for (const id of ["from", "to"]) $(id).addEventListener("keydown", (ev) => { if (ev.key === "Enter") applyRange(); });
  $("zoom-out").addEventListener("click", () => {
    state.range = state.zoomStack.pop() || { since: "1h" };
    run();
  });
  $("tenant").addEventListener("click", () => askTenant(""));
  $("tenant-form").addEventListener("submit", (ev) => { ev.preventDefault(); if ($("tenant-in").value.trim()) setTenant($("tenant-in").value); });
  $("idform").addEventListener("submit", (ev) => { ev.preventDefault(); openTimeline($("idin").value); });
  for (const b of document.querySelectorAll("#tabs > button")) {
    b.addEventListener("click", () => {
      if (b.dataset.view === "timeline" && !state.timeline && $("idin").value.trim()) { openTimeline($("idin").value); return; }
      setView(b.dataset.view);
      writeUrl(false);
    });
  }

  const logs = $("logs");
  logs.addEventListener("scroll", () => layoutRows(false), { passive: true });
  logs.addEventListener("click", (ev) => {
    const a = ev.target.closest("a.id");
    if (a) {
      ev.stopPropagation();
      const row = ev.target.closest("[data-i]");
      const e = row ? state.entries[+row.dataset.i] : null;
      openTimeline(a.dataset.id, e ? e.ms : null);
      return;
    }
    const f = ev.target.closest("[data-f]");
    if (f) { addFilter(f.dataset.f, f.dataset.op, f.dataset.k, f.dataset.v); return; }
    const r = ev.target.closest(".r");
    if (!r || window.getSelection().toString()) return;
    const e = state.entries[+r.dataset.i];
    if (state.open.has(e.key)) { state.open.delete(e.key); state.heights.delete(e.key); }
    else { state.open.add(e.key); if (!state.heights) state.heights = new Map(); }
    state.offsets = null;
    layoutRows(true);
  });
  $("chart-legend").addEventListener("click", (ev) => {
    const s = ev.target.closest("[data-s]");
    if (!s) return;
    const name = state.series[+s.dataset.s].name;
    if (state.hidden.has(name)) state.hidden.delete(name); else state.hidden.add(name);
    drawChart();
  });

  const c = $("hist-c");
  const xOf = (ev) => ev.clientX - c.getBoundingClientRect().left;
  c.addEventListener("mousedown", (ev) => { hist.drag = { x0: xOf(ev), x1: xOf(ev) }; ev.preventDefault(); });
  window.addEventListener("mousemove", (ev) => { if (hist.drag) { hist.drag.x1 = Math.max(0, Math.min(c.clientWidth, xOf(ev))); drawHist(); } });
  window.addEventListener("mouseup", () => {
    const d = hist.drag;
    hist.drag = null;
    if (!d) return;
    if (Math.abs(d.x1 - d.x0) < 4) { drawHist(); return; }
    const span = hist.end - hist.start, w = c.clientWidth;
    zoomTo(hist.start + (Math.min(d.x0, d.x1) / w) * span, hist.start + (Math.max(d.x0, d.x1) / w) * span);
  });

  document.addEventListener("keydown", (ev) => {
    const typing = /^(INPUT|TEXTAREA)$/.test(document.activeElement.tagName);
    if (ev.key === "/" && !typing) { ev.preventDefault(); q.focus(); q.setSelectionRange(q.value.length, q.value.length); }
    if (ev.key === "Escape") { $("range-pop").hidden = true; closeAc(); }
  });
  document.addEventListener("mousedown", (ev) => { if (!ev.target.closest(".range")) $("range-pop").hidden = true; });
  window.addEventListener("resize", () => setView(state.view));
  window.addEventListener("popstate", () => {
    const t = readUrl();
    setQuery(state.query);
    if (t.id && state.view === "timeline") openTimeline(t.id);
    else if (t.run) run({ push: false });
  });

  // With auth_enabled and no tenant yet, the first request answers 401 and the prompt opens.
  api("/loki/api/v1/labels", {}).then(() => showTenant()).catch(() => showTenant());
  if (todo.id && state.view === "timeline") openTimeline(todo.id);
  else if (todo.run) { if (todo.live) startTail(); else run({ push: false }); }
  else { setView(state.view); q.focus(); }
  window.sawmill = { state, run, openTimeline, startTail, togglePause, setTenant };
}

init();
