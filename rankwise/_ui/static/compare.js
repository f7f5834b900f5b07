// The compare page /compare?g=<project>/<group>&g=…: the groups overlaid, one chart per key any of them has
// (each group's mean line and min–max band in its own colour), a keys filter, the config keys whose values
// differ between the groups (the equal ones folded), and each group's state, ranks and steps. Controls: x axis
// (step, relative time: each group from its own start, wall time), log y, smoothing (the group page's
// client-side EMA, chart.js smooth, raw means faded beneath); all in the URL (viewstate.js readCompare).
// Data: the group endpoint per group (state, keys, config) and its series endpoint per group and key, so every
// number drawn is the one the group page draws. While any group runs, the groups are polled (every 3 s,
// doubling to 30 s while nothing changes, as the list pages) and the charts fetched again when one changed.
// A group the server does not know gets a message naming it; the others are still shown.
import { get, groupPath } from "./api.js";
import { el, num, duration, badge, groupHref, projectHref, axisSize } from "./fmt.js";
import { smooth, SMOOTH_FULL } from "./chart.js";
import { xAxis, xText, wallTime } from "./xaxis.js";
import { themeColors } from "./theme.js";
import { readCompare, writeCompare } from "./viewstate.js";

export const PALETTE = ["#0b6bcb", "#d1242f", "#1a7f37", "#8250df", "#bc4c00", "#0598bc", "#bf3989", "#57606a"];
const PARALLEL = 4; // series requests in flight at once
const POLL_MIN_MS = 3000; // live: as app.js polls the list pages
const POLL_MAX_MS = 30000;
const positive = (values) => values.map((v) => (v !== null && v > 0 ? v : null));

function alpha(hex, a) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${a})`;
}

// "<project>/<group>": the project is up to the first slash (group names may hold slashes, project names not)
export function parseRef(ref) {
  const i = ref.indexOf("/");
  return i <= 0 || i === ref.length - 1 ? null : { project: ref.slice(0, i), group: ref.slice(i + 1) };
}

function show(v) {
  if (v === undefined) return "–";
  return typeof v === "string" ? v : typeof v === "number" ? num(v) : JSON.stringify(v);
}

// A group's config as key → value: the values every rank agrees on, and a marker for keys that differ by rank.
function configOf(detail) {
  const out = { ...detail.config.common };
  for (const k of detail.config.differs) out[k] = "(differs between ranks)";
  return out;
}

export function configDiff(groups) {
  const configs = groups.map((g) => configOf(g.detail));
  const keys = [...new Set(configs.flatMap((c) => Object.keys(c)))].sort();
  const differ = [], same = [];
  for (const k of keys) {
    const vals = configs.map((c) => (k in c ? JSON.stringify(c[k]) : undefined));
    (vals.every((v) => v !== undefined && v === vals[0]) ? same : differ).push(k);
  }
  return { configs, differ, same };
}

class CompareChart {
  constructor(page, key, groups) {
    this.page = page;
    this.key = key;
    this.groups = groups; // the entries of page.groups that have this key
    this.u = null;
    this.series = {};
    this.plot = el("div", { class: "plot" });
    this.readout = el("div", { class: "readout" });
    this.legend = el("div", { class: "clegend" }, groups.map((g) =>
      el("span", { "data-group": g.label }, el("span", { class: "swatch", style: `background:${g.color}` }), g.label)));
    this.card = el("section", { class: "card ccard", "data-key": key },
      el("h3", {}, el("span", { text: key })), this.legend, this.plot, this.readout);
    this.onTheme = () => { if (this.answers) this.draw(); };
    window.addEventListener("rw-theme", this.onTheme);
  }

  // every point while smoothing when the group's key is small enough (the group page's rule, chart.js)
  widthFor(g, width) {
    const info = g.detail.keys.find((k) => k.key === this.key);
    return this.page.state.smooth && info && info.points <= SMOOTH_FULL ? 0 : width;
  }

  async load() {
    const width = Math.max(100, Math.min(4000, Math.round(this.plot.clientWidth || 400)));
    const x = this.page.state.axis;
    const answers = await Promise.all(this.groups.map((g) =>
      get(groupPath(g.project, g.group, "series"), { key: this.key, x, width: this.widthFor(g, width) })
        .catch((err) => ({ error: err.message }))));
    if (this.page.closed) return;
    this.answers = answers;
    this.draw();
    window.rw.compareRenders = (window.rw.compareRenders || 0) + 1;
  }

  // draw the answers with the page's log scale and smoothing (no refetch when only those change)
  draw() {
    const answers = this.answers, s = this.page.state;
    const width = Math.max(100, Math.min(4000, Math.round(this.plot.clientWidth || 400)));
    const ok = this.groups.map((g, i) => [g, answers[i]]).filter(([, d]) => !d.error);
    const errs = this.groups.map((g, i) => [g, answers[i]]).filter(([, d]) => d.error);
    // x as drawn: steps, seconds since each group's own start (rel), or epoch seconds (time: t0 + x)
    const xOf = (d) => (d.axis === "time" ? d.x.map((v) => d.t0 + v) : d.x);
    this.series = {};
    for (const [g, d] of ok) this.series[g.label] = { x: xOf(d), mean: d.mean, min: d.min, max: d.max, resolution: d.resolution };
    // one x for all: the union of the groups' x, each group's values null where it has no row
    const xs = [...new Set(ok.flatMap(([g]) => this.series[g.label].x))].sort((a, b) => a - b);
    const at = new Map(xs.map((v, i) => [v, i]));
    const cols = [xs];
    const series = [{ label: s.axis }];
    const bands = [];
    const y = (vals) => (s.log ? positive(vals) : vals);
    const sm = (vals) => y(smooth(vals, s.smooth));
    const line = (label, stroke, w) => ({ label, stroke, width: w, spanGaps: true, points: { show: false } });
    this.meanCol = [];
    for (const [g, d] of ok) {
      const gx = this.series[g.label].x;
      const place = (vals) => { const out = new Array(xs.length).fill(null); gx.forEach((v, i) => { out[at.get(v)] = vals[i]; }); return out; };
      const n = series.length;
      cols.push(place(sm(d.min)), place(sm(d.max)));
      series.push(line(`${g.label} min`, alpha(g.color, 0.35), 1), line(`${g.label} max`, alpha(g.color, 0.35), 1));
      if (s.smooth) { cols.push(place(y(d.mean))); series.push(line(`${g.label} (raw)`, alpha(g.color, 0.3), 1)); }
      this.meanCol.push(cols.length);
      cols.push(place(sm(d.mean)));
      series.push(line(g.label, g.color, 2));
      bands.push({ series: [n + 1, n], fill: alpha(g.color, 0.14) });
    }
    this.ok = ok.map(([g]) => g);
    this.cols = cols;
    const t = themeColors();
    const axis = { stroke: t.fg, grid: { stroke: t.grid, width: 1 }, ticks: { stroke: t.grid, width: 1 } };
    this.card.dataset.axisColor = t.fg;
    if (this.u) this.u.destroy();
    this.u = new uPlot({
      width, height: 220, legend: { show: false }, series, bands,
      scales: { x: { time: s.axis === "time" }, y: { distr: s.log ? 3 : 1 } },
      axes: [{ ...axis, ...xAxis({ axis: s.axis }) }, { ...axis, size: axisSize, values: (u, vals) => vals.map(num) }],
      cursor: { drag: { x: false, y: false } },
      hooks: { setCursor: [(u) => this.showReadout(u.cursor.idx)] },
    }, cols, this.plot);
    this.card.dataset.groups = String(ok.length);
    this.card.dataset.points = String(xs.length);
    this.showReadout(null);
    if (errs.length) this.readout.textContent = errs.map(([g, d]) => `${g.label}: ${d.error}`).join("; ");
  }

  showReadout(idx) {
    if (idx === null || idx === undefined || !this.cols) { this.readout.textContent = ""; return; }
    const axis = this.page.state.axis, v = this.cols[0][idx];
    const parts = [axis === "time" ? wallTime(v) : xText(axis, v)];
    this.ok.forEach((g, i) => parts.push(`${g.label} ${num(this.cols[this.meanCol[i]][idx])}`));
    this.readout.textContent = parts.join("  ");
  }

  resize() { if (this.u) this.u.setSize({ width: Math.max(100, Math.round(this.plot.clientWidth || 400)), height: 220 }); }

  destroy() { window.removeEventListener("rw-theme", this.onTheme); if (this.u) this.u.destroy(); this.u = null; }
}

class ComparePage {
  constructor(main, refs) {
    this.main = main;
    this.refs = refs;
    this.groups = [];
    this.missing = [];
    this.charts = new Map();
    this.closed = false;
    this.state = readCompare(location.search);
    this.timer = null;
    this.delay = POLL_MIN_MS;
  }

  async open() {
    const parsed = this.refs.map((ref) => [ref, parseRef(ref)]);
    const answers = await Promise.all(parsed.map(([, r]) =>
      r ? get(groupPath(r.project, r.group)).catch((err) => ({ error: err.message })) : { error: "not <project>/<group>" }));
    parsed.forEach(([ref, r], i) => {
      const d = answers[i];
      if (d.error) this.missing.push({ ref, error: d.error });
      else this.groups.push({ ...r, label: `${r.project}/${r.group}`, detail: d, color: PALETTE[this.groups.length % PALETTE.length] });
    });
    window.rw.compare = this;
    this.onResize = () => { for (const c of this.charts.values()) c.resize(); };
    window.addEventListener("resize", this.onResize);
    this.render();
    await this.loadCharts();
    window.rw.ready = true;
    this.schedule(true);
    return this;
  }

  // ---- live: poll the groups while any runs (back-off while nothing changes), refetch the charts on a change

  signature() { return JSON.stringify(this.groups.map((g) => [g.detail.state, g.detail.updated, g.detail.steps, g.detail.keys.map((k) => k.key)])); }

  schedule(changed) {
    const live = document.getElementById("live");
    const running = this.groups.some((g) => g.detail.state === "running");
    if (live) { live.textContent = running ? "live" : ""; live.classList.toggle("on", running); }
    if (this.closed || !running) return;
    const max = window.rw.pollMaxMs || POLL_MAX_MS;
    this.delay = changed ? POLL_MIN_MS : Math.min(max, this.delay * 2);
    this.timer = setTimeout(() => this.poll(), this.delay);
  }

  async poll() {
    const before = this.signature(), keys = JSON.stringify(this.keySet());
    const answers = await Promise.all(this.groups.map((g) => get(groupPath(g.project, g.group)).catch(() => null)));
    if (this.closed) return;
    answers.forEach((d, i) => { if (d) this.groups[i].detail = d; });
    const changed = this.signature() !== before;
    if (changed) {
      if (JSON.stringify(this.keySet()) !== keys) { for (const c of this.charts.values()) c.destroy(); this.charts.clear(); this.render(); }
      else this.groupsBox.replaceChildren(this.groupsTable());
      await this.loadCharts();
      window.rw.compareUpdates = (window.rw.compareUpdates || 0) + 1;
    }
    this.schedule(changed);
  }

  // ---- view state: controls → this.state → the URL (history.replaceState: no new history entry)

  set(name, value, refetch) {
    this.state[name] = value;
    const search = writeCompare(this.state, location.search);
    if (search !== location.search) history.replaceState(history.state, "", location.pathname + search + location.hash);
    window.rw.url = location.pathname + search;
    if (name === "filter") this.applyFilter();
    else if (refetch) this.loadCharts();
    else for (const c of this.charts.values()) if (c.answers) c.draw();
  }

  toolbar() {
    const s = this.state;
    const opt = (name, ...controls) => el("label", {}, name, ...controls);
    this.filter = el("input", { type: "search", id: "compare-filter", placeholder: "filter keys", value: s.filter,
      oninput: (e) => this.set("filter", e.target.value) });
    const axis = el("select", { id: "compare-axis", onchange: (e) => this.set("axis", e.target.value, true) },
      el("option", { value: "step", text: "step" }), el("option", { value: "rel", text: "relative time", title: "each group from its own start" }),
      el("option", { value: "time", text: "wall time" }));
    axis.value = s.axis;
    const smoothText = el("output", { id: "compare-smooth-value", text: String(s.smooth) });
    return el("div", { class: "toolbar" }, opt("keys ", this.filter), opt("x ", axis),
      opt(el("input", { type: "checkbox", id: "compare-log", checked: s.log, onchange: (e) => this.set("log", e.target.checked) }), " log y"),
      opt("smoothing ", el("input", { type: "range", id: "compare-smooth", min: 0, max: 0.99, step: 0.01, value: s.smooth,
        // on/off changes what is fetched (every point while smoothing); a new factor only redraws
        oninput: (e) => { const v = Number(e.target.value); smoothText.textContent = e.target.value; this.set("smooth", v, (v > 0) !== (this.state.smooth > 0)); } }),
      smoothText),
      el("span", { class: "muted", text: "each group: mean line and min–max band over its ranks" }));
  }

  groupsTable() {
    return el("table", { class: "grid", id: "compare-groups" },
      el("thead", {}, el("tr", {}, ["", "group", "status", "ranks", "steps", "duration", "states"].map((h) => el("th", { text: h })))),
      el("tbody", {}, this.groups.map((g) => {
        const d = g.detail;
        return el("tr", { "data-group": g.label },
          el("td", {}, el("span", { class: "swatch wide", style: `background:${g.color}` })),
          el("td", {}, el("a", { href: projectHref(g.project), text: g.project }), " / ",
            el("a", { href: groupHref(g.project, g.group), text: g.group })),
          el("td", {}, badge(d.state)),
          el("td", { class: "num", text: `${d.ranks}/${d.world_size}` }),
          el("td", { class: "num", text: d.steps }),
          el("td", { class: "num", text: duration(d.duration) }),
          el("td", { text: Object.entries(d.states).map(([k, v]) => `${v} ${k}`).join(", ") }));
      })));
  }

  keySet() { return [...new Set(this.groups.flatMap((g) => g.detail.keys.map((k) => k.key)))].sort(); }

  render() {
    const head = el("div", {}, el("h1", { text: `Compare ${this.groups.length} group${this.groups.length === 1 ? "" : "s"}` }),
      this.refs.length ? null : el("p", { class: "error", text: "no groups given: open /compare?g=<project>/<group>&g=<project>/<group> (tick groups on a project page)" }),
      this.missing.map((m) => el("p", { class: "error missing", "data-ref": m.ref, text: `g=${m.ref}: ${m.error}` })));
    const diff = configDiff(this.groups);
    this.diff = diff;
    const diffTable = el("table", { class: "grid", id: "config-diff" },
      el("thead", {}, el("tr", {}, el("th", { text: "config" }), this.groups.map((g) =>
        el("th", {}, el("span", { class: "swatch", style: `background:${g.color}` }), g.label)))),
      el("tbody", {}, diff.differ.map((k) => el("tr", { "data-key": k }, el("td", {}, el("code", { text: k })),
        diff.configs.map((c) => el("td", { text: show(c[k]) }))))));
    const same = el("details", { class: "config", id: "config-same" },
      el("summary", { text: `${diff.same.length} config key${diff.same.length === 1 ? "" : "s"} equal in every group` }),
      diff.same.map((k) => el("div", {}, el("code", { text: k }), show(diff.configs[0][k]))));
    this.grid = el("div", { class: "charts" });
    this.groupsBox = el("div", { class: "tablewrap" }, this.groupsTable());
    this.main.replaceChildren(head,
      this.groupsBox,
      el("h2", { text: "Config differences" }),
      diff.differ.length ? el("div", { class: "tablewrap" }, diffTable) : el("p", { class: "muted", id: "config-nodiff", text: "no config key differs between these groups" }),
      same,
      el("h2", { text: "Charts" }),
      this.toolbar(),
      this.grid);
    const keys = new Map();
    for (const g of this.groups) for (const k of g.detail.keys) {
      if (k.key.startsWith("_")) continue;
      if (!keys.has(k.key)) keys.set(k.key, []);
      keys.get(k.key).push(g);
    }
    for (const key of [...keys.keys()].sort()) {
      const c = new CompareChart(this, key, keys.get(key));
      this.charts.set(key, c);
      this.grid.append(c.card);
    }
    if (!keys.size && this.groups.length) this.grid.append(el("p", { class: "muted", text: "these groups have no numeric keys yet" }));
    this.applyFilter();
  }

  async loadCharts() {
    const queue = [...this.charts.values()];
    const worker = async () => { while (queue.length && !this.closed) await queue.shift().load(); };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
  }

  applyFilter() {
    const f = this.state.filter.trim().toLowerCase();
    for (const [key, c] of this.charts) c.card.style.display = !f || key.toLowerCase().includes(f) ? "" : "none";
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    const live = document.getElementById("live");
    if (live) { live.textContent = ""; live.classList.remove("on"); }
    window.removeEventListener("resize", this.onResize);
    for (const c of this.charts.values()) c.destroy();
  }
}

export async function comparePage(main, setCrumbs) {
  setCrumbs(el("a", { href: "/", text: "projects" }), el("span", { text: "compare" }));
  document.title = "compare · rankwise";
  const refs = new URLSearchParams(location.search).getAll("g");
  return new ComparePage(main, refs).open();
}
