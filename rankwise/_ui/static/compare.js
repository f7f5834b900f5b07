// The compare page /compare?g=<project>/<group>&g=…: the groups overlaid, one chart per key any of them has
// (each group's mean line and min–max band in its own colour, x = step), a keys filter, the config keys whose
// values differ between the groups (the equal ones folded), and each group's state, ranks and steps. Data:
// the group endpoint per group (state, keys, config) and its series endpoint per group and key, so every
// number drawn is the one the group page draws. A group the server does not know gets a message naming it;
// the others are still shown.
import { get, groupPath } from "./api.js";
import { el, num, duration, badge, groupHref, projectHref, axisSize } from "./fmt.js";

export const PALETTE = ["#0b6bcb", "#d1242f", "#1a7f37", "#8250df", "#bc4c00", "#0598bc", "#bf3989", "#57606a"];
const PARALLEL = 4; // series requests in flight at once

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
  }

  async load() {
    const width = Math.max(100, Math.min(4000, Math.round(this.plot.clientWidth || 400)));
    const answers = await Promise.all(this.groups.map((g) =>
      get(groupPath(g.project, g.group, "series"), { key: this.key, width }).catch((err) => ({ error: err.message }))));
    if (this.page.closed) return;
    const ok = this.groups.map((g, i) => [g, answers[i]]).filter(([, d]) => !d.error);
    const errs = this.groups.map((g, i) => [g, answers[i]]).filter(([, d]) => d.error);
    for (const [g, d] of ok) this.series[g.label] = { x: d.x, mean: d.mean, min: d.min, max: d.max, resolution: d.resolution };
    // one x for all: the union of the groups' steps, each group's values null where it has no row
    const xs = [...new Set(ok.flatMap(([, d]) => d.x))].sort((a, b) => a - b);
    const at = new Map(xs.map((x, i) => [x, i]));
    const cols = [xs];
    const series = [{ label: "step" }];
    const bands = [];
    for (const [g, d] of ok) {
      const place = (vals) => { const out = new Array(xs.length).fill(null); d.x.forEach((x, i) => { out[at.get(x)] = vals[i]; }); return out; };
      cols.push(place(d.min), place(d.max), place(d.mean));
      const n = series.length;
      series.push({ label: `${g.label} min`, stroke: alpha(g.color, 0.35), width: 1, spanGaps: true, points: { show: false } },
        { label: `${g.label} max`, stroke: alpha(g.color, 0.35), width: 1, spanGaps: true, points: { show: false } },
        { label: g.label, stroke: g.color, width: 2, spanGaps: true, points: { show: false } });
      bands.push({ series: [n + 1, n], fill: alpha(g.color, 0.14) });
    }
    this.ok = ok.map(([g]) => g);
    this.cols = cols;
    if (this.u) this.u.destroy();
    this.u = new uPlot({
      width, height: 220, legend: { show: false }, series, bands, scales: { x: { time: false } },
      axes: [{}, { size: axisSize, values: (u, vals) => vals.map(num) }],
      cursor: { drag: { x: false, y: false } },
      hooks: { setCursor: [(u) => this.showReadout(u.cursor.idx)] },
    }, cols, this.plot);
    this.card.dataset.groups = String(ok.length);
    this.showReadout(null);
    if (errs.length) this.readout.textContent = errs.map(([g, d]) => `${g.label}: ${d.error}`).join("; ");
  }

  showReadout(idx) {
    if (idx === null || idx === undefined || !this.cols) { this.readout.textContent = ""; return; }
    const parts = [`step ${this.cols[0][idx]}`];
    this.ok.forEach((g, i) => parts.push(`${g.label} ${num(this.cols[3 + 3 * i][idx])}`));
    this.readout.textContent = parts.join("  ");
  }

  resize() { if (this.u) this.u.setSize({ width: Math.max(100, Math.round(this.plot.clientWidth || 400)), height: 220 }); }

  destroy() { if (this.u) this.u.destroy(); this.u = null; }
}

class ComparePage {
  constructor(main, refs) {
    this.main = main;
    this.refs = refs;
    this.groups = [];
    this.missing = [];
    this.charts = new Map();
    this.closed = false;
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
    return this;
  }

  render() {
    const head = el("div", {}, el("h1", { text: `Compare ${this.groups.length} group${this.groups.length === 1 ? "" : "s"}` }),
      this.refs.length ? null : el("p", { class: "error", text: "no groups given: open /compare?g=<project>/<group>&g=<project>/<group> (tick groups on a project page)" }),
      this.missing.map((m) => el("p", { class: "error missing", "data-ref": m.ref, text: `g=${m.ref}: ${m.error}` })));
    const groupsTable = el("table", { class: "grid", id: "compare-groups" },
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
    this.filter = el("input", { type: "search", id: "compare-filter", placeholder: "filter keys", oninput: () => this.applyFilter() });
    this.grid = el("div", { class: "charts" });
    this.main.replaceChildren(head,
      el("div", { class: "tablewrap" }, groupsTable),
      el("h2", { text: "Config differences" }),
      diff.differ.length ? el("div", { class: "tablewrap" }, diffTable) : el("p", { class: "muted", id: "config-nodiff", text: "no config key differs between these groups" }),
      same,
      el("h2", { text: "Charts" }),
      el("div", { class: "toolbar" }, el("label", {}, "keys ", this.filter), el("span", { class: "muted", text: "each group: mean line and min–max band over its ranks" })),
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
  }

  async loadCharts() {
    const queue = [...this.charts.values()];
    const worker = async () => { while (queue.length && !this.closed) await queue.shift().load(); };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
  }

  applyFilter() {
    const f = this.filter.value.trim().toLowerCase();
    for (const [key, c] of this.charts) c.card.style.display = !f || key.toLowerCase().includes(f) ? "" : "none";
  }

  close() {
    this.closed = true;
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
