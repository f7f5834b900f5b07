// The group page: toolbar (key filter, x axis, log scale, smoothing, per-rank lines, zoom range), one chart per
// key, the straggler panel and the run table. Live: while the group runs, the server's event stream says when
// the agent committed something, and the visible charts are fetched again (charts off screen when scrolled to).
// Keys whose values are media get a media panel (media.js; histograms: hist.js) below the charts. Alerts
// (alerts.js): a banner under the summary, markers on charts, badges in the runs table; a "System" section
// (system.js) when the agent sampled system metrics. Charts are GroupCharts (groupchart.js): with no x= in the
// URL each key is drawn against its define_metric step_metric, and alert markers follow every x axis.
import { get, early, events, groupPath } from "./api.js";
import { el, num, duration, when, states, badge } from "./fmt.js";
import { GroupChart } from "./groupchart.js";
import { StragglerPanel } from "./straggler.js";
import { MediaPanel, bytes } from "./media.js";
import { HistogramPanel } from "./hist.js";
import { AlertBanner } from "./alerts.js";
import { SystemSection } from "./system.js";
import { readState, writeState, parseRanks, formatRanks, rangeAxis } from "./viewstate.js";
import { xText } from "./xaxis.js";
import { rankHref } from "./rank.js";
import { parsePick } from "./ranks.js";

const MARGIN = 300; // px around the viewport in which a chart counts as visible

export class GroupPage {
  constructor(root, project, group) {
    this.root = root;
    this.project = project;
    this.group = group;
    this.state = readState(location.search); // the view the URL asks for (viewstate.js; docs/ui.md)
    this.charts = new Map();
    this.panels = new Map(); // media panels by key
    window.rw.panels = window.rw.panels || new Map();
    this.slow = [];
    this.es = null;
    this.closed = false;
    this.refreshing = null;
    this.pending = false;
    this.alerts = new AlertBanner(this);
    this.system = new SystemSection(this);
  }

  async open() {
    const detail = await (early(this.project, this.group) || get(groupPath(this.project, this.group)));
    performance.mark("rw-detail");
    this.build(detail);
    this.showRange();
    this.io = new IntersectionObserver((entries) => {
      for (const e of entries) {
        const chart = e.target.rwPanel || this.charts.get(e.target.dataset.key);
        if (chart) chart.visible = e.isIntersecting;
      }
      this.kick();
    }, { rootMargin: `${MARGIN}px` });
    this.ro = new ResizeObserver(() => { for (const c of this.all()) c.resize(); this.straggler.resize(); this.system.resize(); });
    this.ro.observe(this.grid);
    this.ro.observe(this.mediaGrid);
    this.update(detail);
    this.syncControls();
    // first paint: charts on screen now, and the straggler panel; then mark the page ready (tests read it)
    const onScreen = this.all().filter((c) => this.onScreen(c.card));
    onScreen.forEach((c) => { c.visible = true; });
    performance.mark("rw-built");
    await Promise.all([...onScreen.map((c) => c.load()), this.straggler.load(), this.loadAlerts(), this.system.load()]);
    for (const c of this.all()) this.io.observe(c.card);
    performance.mark("rw-ready");
    window.rw.ready = performance.now();
    if (detail.state === "running") this.follow();
  }

  all() { return [...this.charts.values(), ...this.panels.values()]; }

  onScreen(node) {
    const r = node.getBoundingClientRect();
    return node.offsetParent !== null && r.top < innerHeight + MARGIN && r.bottom > -MARGIN;
  }

  build(d) {
    this.title = el("h1", {}, el("span", { text: d.name }), " ", el("span", { id: "state" }));
    this.summary = el("div", { class: "summary", id: "summary" });
    this.rangeText = el("span", { class: "range", id: "range" });
    const opt = (name, ...controls) => el("label", {}, name, ...controls);
    this.toolbar = el("div", { class: "toolbar" },
      opt("keys ", el("input", { type: "search", id: "filter", placeholder: "filter: text or /regex/",
        oninput: (e) => this.setFilter(e.target.value) })),
      opt("x ", this.axisSelect = el("select", { id: "axis", onchange: (e) => this.setOption("axis", e.target.value, true) },
        el("option", { value: "auto", text: "default (per key)", title: "each key against the step_metric of its define_metric, else step" }),
        el("option", { value: "step", text: "step" }), el("option", { value: "rel", text: "relative time" }),
        el("option", { value: "time", text: "wall time" }))),
      opt(el("input", { type: "checkbox", id: "log", onchange: (e) => this.setOption("log", e.target.checked) }), " log y"),
      opt("smoothing ", el("input", { type: "range", id: "smooth", min: 0, max: 0.99, step: 0.01, value: 0,
        oninput: (e) => { this.smoothText.textContent = e.target.value; this.setSmooth(Number(e.target.value)); } }),
        this.smoothText = el("output", { id: "smooth-value", text: "0", title: "EMA factor (debiased), applied to the points drawn" })),
      opt(el("input", { type: "checkbox", id: "ranks", onchange: (e) => this.setOption("ranks", e.target.checked, true) }),
        " per-rank lines"),
      opt("ranks ", this.pickInput = el("input", { type: "search", id: "pick", placeholder: "0-3,7 · slowest 4 · NaN ranks",
        title: "which rank lines to draw and colour: numbers and ranges, slowest N / fastest N (straggler panel), NaN ranks",
        onchange: (e) => this.setPick(e.target.value) })),
      this.rangeText);
    this.empty = el("p", { class: "muted", text: "no group rows yet: they appear as the ranks log" });
    this.grid = el("div", { class: "charts", id: "charts" });
    this.mediaHead = el("h2", { id: "media-head", text: "Media", style: "display:none" });
    this.mediaGrid = el("div", { class: "charts media", id: "media" });
    this.straggler = new StragglerPanel(this);
    this.configBox = el("details", { class: "config", id: "config" });
    this.runsBox = el("div", { class: "tablewrap" });
    this.root.replaceChildren(this.title, this.summary, this.alerts.root, this.toolbar, this.empty, this.grid, this.mediaHead, this.mediaGrid,
      el("h2", { text: "Stragglers" }), this.straggler.root, this.system.head, this.system.root,
      el("h2", { text: "Runs" }), this.configBox, this.runsBox);
  }

  // group detail (initial or refreshed): header, keys (new ones get a chart), run table
  update(d) {
    this.detail = d;
    this.showSummary(d);
    for (const k of d.keys) {
      if (this.charts.has(k.key)) { this.charts.get(k.key).info = k; continue; }
      const chart = new GroupChart(this, k.key, k);
      this.charts.set(k.key, chart);
      this.grid.append(chart.card);
      if (this.io) this.io.observe(chart.card);
      window.rw.charts.set(k.key, chart);
    }
    for (const m of d.media || []) {
      const have = this.panels.get(m.key);
      if (have) { have.info = m; continue; }
      const panel = m.type === "histogram" ? new HistogramPanel(this, m) : new MediaPanel(this, m);
      this.panels.set(m.key, panel);
      this.mediaGrid.append(panel.card);
      if (this.io) this.io.observe(panel.card);
      window.rw.panels.set(m.key, panel);
    }
    // step metrics the runs defined (define_metric(k, step_metric=M)): each an x axis, "metric:M" to the server
    for (const m of d.step_metrics || []) {
      const value = `metric:${m.key}`;
      if ([...this.axisSelect.options].some((o) => o.value === value)) continue;
      this.axisSelect.append(el("option", { value, text: m.key, title: `step metric of ${m.for.join(", ")}` }));
    }
    this.addKeyAxes(d);
    this.mediaHead.style.display = this.panels.size ? "" : "none";
    this.empty.style.display = d.keys.length || this.panels.size ? "none" : "";
    this.applyFilter();
    this.straggler.setKeys(d.keys.map((k) => k.key));
    this.renderRuns(d);
  }

  // alerts changed: their markers on the charts and badges in the runs table follow
  async loadAlerts() {
    if (!(await this.alerts.load())) return;
    for (const c of this.charts.values()) if (c.u) c.u.redraw(false);
    if (this.detail) this.renderRuns(this.detail);
    if (this.straggler.data) this.straggler.render();
    window.rw.alerts = this.alerts.alerts.length;
  }

  showSummary(s) {
    document.getElementById("state")?.replaceChildren(badge(s.state));
    this.summary.textContent = `${s.ranks} of ${s.world_size} ranks on ${s.nodes.length} node(s) · ${s.steps.toLocaleString()} steps · ` +
      `started ${when(s.created)} · ${duration(s.duration)} · ${states(s.states)}` + (s.late_rows ? ` · ${s.late_rows} late points` : "");
  }

  renderRuns(d) {
    const runs = d.runs;
    const sumKeys = [...new Set(runs.flatMap((r) => Object.keys(r.summary)))].sort();
    const diff = d.config.differs;
    const common = Object.entries(d.config.common);
    this.configBox.replaceChildren(el("summary", { text: `config: ${common.length} key(s) the same in every run` +
      (diff.length ? `, ${diff.length} differ (columns below)` : "") }),
      ...common.map(([k, v]) => el("code", { text: `${k}=${JSON.stringify(v)}` })));
    const head = ["rank", "name", "node", "state", "exit", "step", "rows", "runtime", "alerts", ...sumKeys, ...diff.map((k) => `config.${k}`)];
    const cell = (v, cls) => el("td", { class: typeof v === "number" ? "num" : cls, text: typeof v === "number" ? num(v) : v ?? "–" });
    // a media value in the summary: its type (and a link to the file), not its JSON
    // NaN and ±inf (JSON null in the summary, spelled out in summary_nonfinite) are not "–" (never logged)
    const summaryCell = (v, bad) => {
      if (bad) return el("td", { class: "num nonfinite", text: bad, title: "the last value logged is not a finite number" });
      if (v === undefined) return el("td", { class: "num missing", text: "–", title: "never logged by this rank" });
      if (v === null || typeof v !== "object") return cell(v);
      const m = Array.isArray(v) && v.length && v[0] && v[0]._type ? v[0] : v;
      if (!m._type) return cell(JSON.stringify(v));
      const what = `${m._type}${Array.isArray(v) ? ` ×${v.length}` : ""}${m.skipped ? ` (skipped: ${m.skipped})` : m.error ? " (error)" : ""}${m.size ? `, ${bytes(m.size)}` : ""}`;
      return el("td", {}, m.url ? el("a", { href: m.url, target: "_blank", rel: "noopener", text: what }) : what);
    };
    const rows = runs.map((r) => el("tr", { "data-rank": r.rank, class: this.slow.includes(r.rank) ? "hl" : null },
      el("td", { class: "num" }, el("a", { href: rankHref(this.project, this.group, r.rank), text: r.rank, class: "ranklink" })), cell(r.name), cell(r.node), el("td", {}, badge(r.state)), cell(r.exit_code), cell(r.step), cell(r.rows),
      el("td", { class: "num", text: duration(r.runtime) }), this.alertCell(r.rank),
      ...sumKeys.map((k) => summaryCell(r.summary[k], (r.summary_nonfinite || {})[k])),
      ...diff.map((k) => cell(k in r.config ? JSON.stringify(r.config[k]) : "(unset)"))));
    this.runsBox.replaceChildren(el("table", { class: "grid", id: "runs" },
      el("thead", {}, el("tr", {}, head.map((h) => el("th", { text: h })))), el("tbody", {}, rows)));
  }

  // a badge per alert kind about this rank (hover: the messages)
  alertCell(rank) {
    const mine = this.alerts.forRank(rank);
    const by = new Map();
    for (const a of mine) by.set(a.kind, [...(by.get(a.kind) || []), a]);
    return el("td", { class: "alertcell" }, [...by].map(([kind, list]) => el("span", {
      class: `abadge ${String(list[list.length - 1].level).toLowerCase()}`, "data-kind": kind,
      title: list.map((a) => a.message).join("\n"), text: list.length > 1 ? `${kind} ×${list.length}` : kind })));
  }

  markSlowest(ranks) {
    this.slow = ranks.slice(0, 1);
    for (const tr of this.runsBox.querySelectorAll("tr[data-rank]")) tr.classList.toggle("hl", this.slow.includes(Number(tr.dataset.rank)));
  }

  setFilter(text) { this.state.filter = text; this.applyFilter(); this.saveState(); }

  applyFilter() {
    const f = this.state.filter.trim();
    let test = (k) => k.toLowerCase().includes(f.toLowerCase());
    if (f.length > 2 && f.startsWith("/") && f.endsWith("/")) {
      try { const re = new RegExp(f.slice(1, -1), "i"); test = (k) => re.test(k); } catch { /* keep substring */ }
    }
    for (const [k, c] of this.charts) c.card.style.display = !f || test(k) ? "" : "none";
    for (const [k, c] of this.panels) c.card.style.display = !f || test(k) ? "" : "none";
    if (this.panels.size) this.mediaHead.style.display = [...this.panels.keys()].some((k) => !f || test(k)) ? "" : "none";
    requestAnimationFrame(() => this.kick());
  }

  // option changes: those the server answers differently (axis, per-rank lines) refetch; the others re-render
  setOption(name, value, refetch = false) {
    this.state[name] = value;
    if (name === "axis") { this.state.range = null; this.state.rangeAxis = null; }
    this.saveState();
    this.showRange();
    if (refetch) this.reloadAll();
    else for (const c of this.charts.values()) c.render();
    if (name === "axis") for (const p of this.panels.values()) if (p instanceof HistogramPanel) p.stale = true;
  }

  // rank picker: the chosen ranks get per-rank lines in distinct colours (turning per-rank lines on), the rest hide
  setPick(text) {
    const sd = this.straggler.data;
    const slowest = sd ? sd.ranks.filter((r) => r.mean !== null).sort((a, b) => b.mean - a.mean).map((r) => r.rank) : [];
    const nan = new Set();
    for (const c of this.charts.values()) for (const r of (c.data && c.data.nan_rank) || []) if (r !== null && r >= 0) nan.add(r);
    for (const r of (this.detail && this.detail.runs) || []) if (Object.keys(r.summary_nonfinite || {}).length) nan.add(r.rank);
    let pick;
    try { pick = parsePick(text, { slowest, nan }); } catch (err) {
      this.pickInput.classList.add("bad"); this.pickInput.title = err.message; return;
    }
    this.pickInput.classList.remove("bad");
    this.pickInput.dataset.ranks = pick ? [...pick].sort((a, b) => a - b).join(",") : "";
    this.state.pick = pick ? formatRanks([...pick]) : ""; // the resolved ranks, in the URL as ranks=
    this.saveState();
    if (pick && !this.state.ranks) {
      document.getElementById("ranks").checked = true;
      this.setOption("ranks", true, true);
    } else for (const c of this.charts.values()) c.render();
  }

  // smoothing on or off changes what charts ask for (every point while smoothing: chart.js SMOOTH_FULL)
  setSmooth(value) { this.setOption("smooth", value, (value > 0) !== (this.state.smooth > 0)); }

  // `from`: the chart the range was dragged on (in "default (per key)" mode the range is in its axis' units)
  setRange(range, from = null) {
    this.state.range = range;
    const dragged = from && from.axis ? from.axis() : "step";
    this.state.rangeAxis = range ? (this.state.axis === "auto" ? dragged : this.state.axis) : null;
    this.saveState();
    this.showRange();
    this.reloadAll();
    this.straggler.load();
  }

  showRange() {
    const r = this.state.range;
    if (!r) { this.rangeText.replaceChildren("drag on a chart to zoom"); return; }
    const axis = rangeAxis(this.state), t0 = this.t0();
    const bare = axis === "step" || axis.startsWith("metric:"); // "step 10 – 90", not "step 10 – step 90"
    const hi = bare ? xText(axis, r[1], t0).split(" ").pop() : xText(axis, r[1], t0);
    this.rangeText.replaceChildren(`${xText(axis, r[0], t0)} – ${hi} `,
      el("a", { href: "#", id: "reset", text: "reset zoom", onclick: (e) => { e.preventDefault(); this.setRange(null); } }));
  }

  // ---- view state in the URL (viewstate.js): controls follow the state; every change rewrites the URL

  // the controls show this.state (after the first detail, once the axis and straggler options exist)
  syncControls() {
    const s = this.state;
    const byId = (id) => this.root.querySelector(`#${id}`);
    byId("filter").value = s.filter;
    if (![...this.axisSelect.options].some((o) => o.value === s.axis)) {
      this.axisSelect.append(el("option", { value: s.axis, text: s.axis.replace(/^metric:/, "") }));
    }
    this.axisSelect.value = s.axis;
    byId("log").checked = s.log;
    byId("smooth").value = String(s.smooth);
    this.smoothText.textContent = String(s.smooth);
    byId("ranks").checked = s.ranks;
    this.pickInput.value = s.pick;
    this.pickInput.dataset.ranks = s.pick ? parseRanks(s.pick).join(",") : "";
    const st = this.straggler;
    if ([...st.metric.options].some((o) => o.value === s.smetric)) st.metric.value = s.smetric;
    st.view.value = s.sview;
  }

  // the URL of this view (history.replaceState: a control change is no new history entry)
  saveState() {
    if (this.closed) return;
    this.state.smetric = this.straggler ? this.straggler.metric.value : this.state.smetric;
    this.state.sview = this.straggler ? this.straggler.view.value : this.state.sview;
    const search = writeState(this.state, location.search);
    if (search !== location.search) history.replaceState(history.state, "", location.pathname + search + location.hash);
    window.rw.url = location.pathname + search;
  }

  // the per-rank selection ("0-3,7", a list of ranks, or "" for every rank): read by the charts' rank picker
  setRankSelection(value) {
    const list = Array.isArray(value) ? value : parseRanks(value);
    if (list === null) throw new Error(`ranks: ${JSON.stringify(value)} is not a list like "0-3,7"`);
    this.state.pick = formatRanks(list);
    this.saveState();
    if (this.pickInput) this.pickInput.value = this.state.pick;
    for (const c of this.charts.values()) c.render();
    if (typeof this.onRankSelection === "function") this.onRankSelection(list);
  }

  rankSelection() { return this.state.pick ? parseRanks(this.state.pick) : null; }

  // the picked ranks as a set (chart.js asks per rank line), null when every rank is shown
  pickSet() {
    if (this._pickText !== this.state.pick) {
      this._pickText = this.state.pick;
      const list = this.state.pick ? parseRanks(this.state.pick) : null;
      this._pickSet = list && list.length ? new Set(list) : null;
    }
    return this._pickSet;
  }

  // every other numeric key as an x axis too ("metric:K": the server pairs rows by step, docs/ui.md)
  addKeyAxes(d) {
    let group = this.axisSelect.querySelector("optgroup.keyaxes");
    if (!group) this.axisSelect.append(group = el("optgroup", { class: "keyaxes", label: "a logged key" }));
    const have = new Set([...this.axisSelect.options].map((o) => o.value));
    for (const k of d.keys) if (!have.has(`metric:${k.key}`)) group.append(el("option", { value: `metric:${k.key}`, text: k.key }));
  }

  // the group's t0 (epoch seconds of its first commit) from any chart on a time axis: wall-time range text
  t0() {
    for (const c of this.charts.values()) if (c.data && c.data.t0 !== null && c.data.t0 !== undefined) return c.data.t0;
    return null;
  }

  reloadAll() {
    for (const c of this.all()) c.stale = true;
    return this.kick();
  }

  kick() {
    return Promise.all(this.all().filter((c) => c.stale && c.visible && c.card.style.display !== "none").map((c) => c.load()));
  }

  // live: the event stream says when something changed; refresh at most once per second
  follow() {
    const live = document.getElementById("live");
    live.textContent = "live"; live.classList.add("on");
    this.es = events(this.project, this.group, (summary) => { this.showSummary(summary); this.refresh(); },
      () => { live.textContent = "finished"; live.classList.remove("on"); this.refresh(); });
  }

  async refresh() {
    if (this.refreshing) { this.pending = true; return; }
    this.refreshing = (async () => {
      const detail = await get(groupPath(this.project, this.group));
      if (this.closed) return;
      this.update(detail);
      await Promise.all([this.reloadAll(), this.straggler.load(), this.loadAlerts(), this.system.load()]);
      window.rw.liveUpdates = (window.rw.liveUpdates || 0) + 1;
    })().catch(() => {}).finally(() => {
      this.refreshing = null;
      if (this.pending && !this.closed) { this.pending = false; setTimeout(() => this.refresh(), 1000); }
    });
  }

  close() {
    this.closed = true;
    if (this.es) this.es.close();
    if (this.io) this.io.disconnect();
    if (this.ro) this.ro.disconnect();
    for (const c of this.all()) c.destroy();
    this.straggler.destroy();
    this.system.destroy();
    window.rw.charts.clear();
    window.rw.panels.clear();
  }
}
