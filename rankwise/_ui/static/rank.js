// The rank page /g/<project>/<group>/rank/<r> (GET .../ranks/<r>, rankwise/_ui/rank.py): one rank's header (run
// name, node, pid, state, exit code, steps, runtime), why it failed (exception type and message, the traceback
// folded), its alerts, one chart per numeric key it logged (its own line over the group's min–max band and mean:
// the series endpoint with rank=R drawn by chart.js), its media (media.js and hist.js
// panels with the rank chosen), its system samples (system.js cards), its summary and config. While the group
// runs, the group's event stream says when the agent committed something: header and visible charts follow.
import { get, groupPath, events } from "./api.js";
import { el, num, duration, when, badge, groupHref } from "./fmt.js";
import { KeyChart } from "./chart.js";
import { MediaPanel, bytes } from "./media.js";
import { HistogramPanel } from "./hist.js";
import { SystemSection } from "./system.js";

const MINE = "#e8590c"; // this rank's line: apart from the band's blue and the min/max ranks' blue and red
const MARGIN = 300; // px around the viewport in which a chart counts as visible (as on the group page)

export function rankHref(project, group, rank) {
  return `${groupHref(project, group)}/rank/${encodeURIComponent(rank)}`;
}

// one key: the series endpoint's group band and mean with this rank's line only
class RankChart extends KeyChart {
  seriesParams(params) {
    const { ranks, ...rest } = params; // rank=R: the server sends this rank's line alone (not every rank's)
    return { ...rest, rank: this.page.rank };
  }

  render() {
    super.render();
    if (this.data) this.card.dataset.mine = String((this.data.ranks || []).length);
  }

  options(d, ranks) {
    const o = super.options(d, ranks);
    for (const s of o.series) if (s.label === `rank ${this.page.rank}`) Object.assign(s, { stroke: MINE, width: 2 });
    return o;
  }

  showReadout(idx) {
    super.showReadout(idx);
    const mine = this.data && this.data.ranks && this.data.ranks[0];
    if (!mine) return;
    const v = idx === null || idx === undefined ? null : mine.values[idx];
    this.readout.prepend(el("span", { class: "swatch", style: `background:${MINE}` }),
      idx === null || idx === undefined ? `rank ${mine.rank}  ` : `rank ${mine.rank} ${num(v)}  `);
  }
}

export class RankPage {
  constructor(root, project, group, rank) {
    this.root = root;
    this.project = project;
    this.group = group;
    this.rank = Number(rank);
    this.rankText = rank;
    this.state = { axis: "step", log: false, smooth: 0, ranks: true, range: null, filter: "" };
    this.charts = new Map();
    this.panels = new Map();
    this.detail = null;
    this.alerts = { markersFor: (key) => (this.detail ? this.detail.alerts.filter((a) => a.key === key && a.step !== null && a.step !== undefined) : []) };
    this.system = new SystemSection(this);
  }

  path() { return groupPath(this.project, this.group, `ranks/${encodeURIComponent(this.rankText)}`); }

  async open() {
    const d = await get(this.path());
    this.detail = { ...d, runs: [d] }; // the media panels list the ranks of page.detail.runs: this one only
    this.build(d);
    this.io = new IntersectionObserver((entries) => {
      for (const e of entries) {
        const c = e.target.rwPanel || this.charts.get(e.target.dataset.key);
        if (c) c.visible = e.isIntersecting;
      }
      this.kick();
    }, { rootMargin: `${MARGIN}px` });
    this.ro = new ResizeObserver(() => { for (const c of this.all()) c.resize(); this.system.resize(); });
    this.ro.observe(this.grid);
    const onScreen = this.all().filter((c) => { const r = c.card.getBoundingClientRect(); return r.top < innerHeight + MARGIN; });
    onScreen.forEach((c) => { c.visible = true; });
    await Promise.all(onScreen.map((c) => c.load()));
    for (const c of this.all()) this.io.observe(c.card);
    window.rw.ready = performance.now();
    if (d.group_state === "running") this.follow();
  }

  // live: on each update of the group, the rank's detail again; a changed header is redrawn, charts refetched
  follow() {
    const live = document.getElementById("live");
    live.textContent = "live"; live.classList.add("on");
    this.es = events(this.project, this.group, () => this.refresh(),
      () => { live.textContent = "finished"; live.classList.remove("on"); this.refresh(); });
  }

  async refresh() {
    if (this.refreshing) { this.pending = true; return; }
    this.refreshing = (async () => {
      const d = await get(this.path());
      if (this.closed) return;
      this.detail = { ...d, runs: [d] };
      this.showHead(d);
      for (const key of d.keys) if (!this.charts.has(key)) this.addChart(key);
      this.showSystem(d.system);
      this.showTables(d);
      for (const c of this.all()) c.stale = true;
      await this.kick();
      window.rw.liveUpdates = (window.rw.liveUpdates || 0) + 1;
    })().catch(() => {}).finally(() => {
      this.refreshing = null;
      if (this.pending && !this.closed) { this.pending = false; setTimeout(() => this.refresh(), 1000); }
    });
  }

  all() { return [...this.charts.values(), ...this.panels.values()]; }

  // title, facts, exception and alerts: redrawn only when they changed (a reader's open traceback stays open)
  showHead(d) {
    const sig = JSON.stringify([d.state, d.exit_code, d.step, d.rows, d.runtime, d.finished, d.group_state, d.ranks, d.exception, d.alerts]);
    if (sig === this.headSig) return;
    this.headSig = sig;
    const link = (r, text) => el("a", { href: rankHref(this.project, this.group, r), text, class: "rnav" });
    const i = d.ranks.indexOf(d.rank);
    this.head.replaceChildren(
      el("h1", { id: "rank-title" }, el("span", { text: `rank ${d.rank}` }), " ", badge(d.state),
        el("span", { class: "muted small" }, " of ", el("a", { href: groupHref(this.project, this.group), text: d.group }),
          ` (${d.ranks.length} of ${d.world_size} ranks, ${d.group_state}) `,
          i > 0 ? link(d.ranks[i - 1], `← rank ${d.ranks[i - 1]}`) : null, " ",
          i >= 0 && i < d.ranks.length - 1 ? link(d.ranks[i + 1], `rank ${d.ranks[i + 1]} →`) : null)),
      this.facts(d), this.exception(d), this.alertList(d));
  }

  addChart(key) {
    const c = new RankChart(this, key, { key });
    this.charts.set(key, c);
    this.grid.append(c.card);
    if (this.io) this.io.observe(c.card);
    window.rw.charts.set(key, c);
  }

  build(d) {
    this.head = el("div", { id: "rank-head" });
    this.root.replaceChildren(this.head);
    this.showHead(d);
    this.grid = el("div", { class: "charts", id: "charts" });
    for (const key of d.keys) this.addChart(key);
    this.root.append(el("h2", { text: "Charts" }),
      el("p", { class: "muted small", text: `rank ${d.rank} (orange) over the group's min–max band and mean (blue); drag to zoom, double-click to reset` }),
      this.grid);
    if (d.media.length) {
      const mediaGrid = el("div", { class: "charts media", id: "media" });
      for (const m of d.media) {
        const panel = m.type === "histogram" ? new HistogramPanel(this, m) : new MediaPanel(this, m);
        panel.rank.value = String(d.rank); // the panel's rank choice: this rank's own values
        this.panels.set(m.key, panel);
        mediaGrid.append(panel.card);
      }
      this.root.append(el("h2", { text: "Media" }), mediaGrid);
    }
    this.root.append(this.system.head, this.system.root);
    this.showSystem(d.system);
    this.summaryBox = el("div");
    this.configBox = el("div");
    this.root.append(el("h2", { text: "Summary" }), this.summaryBox, el("h2", { text: "Config" }), this.configBox);
    this.showTables(d);
  }

  showTables(d) {
    this.summaryBox.replaceChildren(this.table("summary", Object.entries(d.summary).sort(),
      (k, v) => this.summaryValue(v, (d.summary_nonfinite || {})[k])));
    this.configBox.replaceChildren(this.table("rank-config", Object.entries(d.config).sort(), (k, v) => JSON.stringify(v)));
  }

  facts(d) {
    const items = [["run", d.name], ["node", d.node], ["local rank", d.local_rank], ["pid", d.pid], ["exit code", d.exit_code],
      ["steps", d.step], ["rows", d.rows], ["runtime", duration(d.runtime)], ["started", when(d.created)], ["finished", when(d.finished)]];
    if (d.incarnations > 1) items.push(["incarnations", d.incarnations]);
    return el("dl", { class: "facts", id: "facts" }, items.map(([k, v]) =>
      el("div", { "data-fact": k }, el("dt", { text: k }), el("dd", { text: v === null || v === undefined ? "–" : String(v) }))));
  }

  exception(d) {
    const e = d.exception;
    if (!e) {
      const why = d.state === "failed" || d.state === "crashed" ? "no exception recorded (killed, or exited with a code and no exception)" : null;
      return why ? el("p", { class: "muted", id: "exception", text: why }) : el("span", { id: "exception" });
    }
    return el("div", { class: "exception", id: "exception" },
      el("div", { class: "extitle" }, el("strong", { class: "extype", text: e.type }), ": ", el("span", { class: "exmsg", text: e.message }),
        e.thread ? el("span", { class: "muted small", text: ` (in thread ${e.thread})` }) : null),
      el("details", { class: "extrace" }, el("summary", { text: "traceback" }), el("pre", { class: "traceback", text: e.traceback || "" })));
  }

  alertList(d) {
    if (!d.alerts.length) return el("span", { id: "rank-alerts" });
    return el("ul", { id: "rank-alerts", class: "rank-alerts" }, d.alerts.map((a) =>
      el("li", { class: `alert ${String(a.level).toLowerCase()}`, "data-kind": a.kind, "data-step": a.step ?? null },
        el("span", { class: "akind", text: a.kind }), " ", el("span", { class: "amsg", text: a.message }),
        " ", el("span", { class: "muted small", text: when(a.time) }))));
  }

  summaryValue(v, bad) {
    if (bad) return bad;
    if (v === null || typeof v !== "object") return num(v);
    const m = Array.isArray(v) && v.length && v[0] && v[0]._type ? v[0] : v;
    if (!m._type) return JSON.stringify(v);
    return `${m._type}${Array.isArray(v) ? ` ×${v.length}` : ""}${m.size ? `, ${bytes(m.size)}` : ""}`;
  }

  table(id, entries, show) {
    if (!entries.length) return el("p", { class: "muted", id, text: "none" });
    return el("div", { class: "tablewrap" }, el("table", { class: "grid kv", id },
      el("tbody", {}, entries.map(([k, v]) => el("tr", { "data-key": k }, el("th", { text: k }), el("td", { text: show(k, v) }))))));
  }

  // this rank's own samples: a line per key, as the group page's System cards draw them
  showSystem(s) {
    const any = s.keys.length > 0;
    this.system.head.style.display = any ? "" : "none";
    this.system.root.style.display = any ? "" : "none";
    for (const k of s.keys) {
      this.system.draw({ id: `rank:${k.key}`, title: k.key, xs: k.t, cols: [k.values], fmt: num,
        series: [[`rank ${this.rank}`, MINE, 1.5]], band: false });
    }
    window.rw.system = s.keys.length;
  }

  setRange(range) {
    this.state.range = range;
    for (const c of this.all()) c.stale = true;
    this.kick();
  }

  kick() {
    return Promise.all(this.all().filter((c) => c.stale && c.visible).map((c) => c.load()));
  }

  close() {
    this.closed = true;
    if (this.es) this.es.close();
    if (this.io) this.io.disconnect();
    if (this.ro) this.ro.disconnect();
    for (const c of this.all()) c.destroy();
    this.system.destroy();
    window.rw.charts.clear();
  }
}
