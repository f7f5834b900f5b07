// The "System" section of the group page (GET .../system, rankwise/_ui/system.py): per-rank process and GPU
// metrics (proc.*, gpu.*) as the band (min–max over ranks) and mean over wall time, and node metrics (host.*)
// as one line per node. Hidden while the group has no system samples. Colours follow the theme (theme.js):
// axes, grid, the band's blue and the node lines' lightness; redrawn on "rw-theme".
import { get, groupPath } from "./api.js";
import { el, num, axisSize } from "./fmt.js";
import { themeColors, isDark } from "./theme.js";

// axis labels: byte counts in KiB/MiB/GiB (RSS of 200 MB is not 200000000), anything else as num()
function unitOf(key) {
  if (!/bytes/.test(key)) return num;
  return (v) => {
    const a = Math.abs(v);
    if (a >= 1 << 30) return `${num(v / (1 << 30))} GiB`;
    if (a >= 1 << 20) return `${num(v / (1 << 20))} MiB`;
    if (a >= 1 << 10) return `${num(v / (1 << 10))} KiB`;
    return `${num(v)} B`;
  };
}

const LIGHT = { mean: "#0b6bcb", edge: "rgba(11,107,203,0.35)", band: "rgba(11,107,203,0.16)", node: 42 };
const DARK = { mean: "#4c9aff", edge: "rgba(76,154,255,0.45)", band: "rgba(76,154,255,0.2)", node: 65 };
const palette = () => (isDark() ? DARK : LIGHT);

export class SystemSection {
  constructor(page) {
    this.page = page;
    this.seq = 0;
    this.plots = new Map(); // card id -> { u, card }
    this.head = el("h2", { id: "system-head", text: "System", style: "display:none" });
    this.root = el("div", { class: "charts system", id: "system", style: "display:none" });
    this.onTheme = () => { for (const p of this.plots.values()) p.shape = ""; for (const c of this.cardsOf(this.last)) this.draw(c); };
    window.addEventListener("rw-theme", this.onTheme);
  }

  async load() {
    const seq = ++this.seq;
    let d;
    try {
      d = await get(groupPath(this.page.project, this.page.group, "system"), { width: this.width() });
    } catch {
      return; // an older server or store: no section
    }
    if (seq !== this.seq) return;
    this.last = d;
    const cards = this.cardsOf(d);
    const any = cards.length > 0;
    this.head.style.display = any ? "" : "none";
    this.root.style.display = any ? "" : "none";
    for (const c of cards) this.draw(c);
    window.rw.system = cards.length;
  }

  cardsOf(d) {
    if (!d) return [];
    const BAND = palette();
    return [
      ...d.ranks.map((k) => ({ id: `rank:${k.key}`, title: `${k.key} (${k.ranks.length} ranks)`, xs: k.t,
        cols: [k.min, k.max, k.mean], fmt: unitOf(k.key), series: [["min", BAND.edge, 1], ["max", BAND.edge, 1], ["mean", BAND.mean, 2]], band: true })),
      ...this.nodeCards(d.nodes),
    ];
  }

  width() { return Math.max(100, Math.min(1000, Math.round((this.root.clientWidth || 800) / 2))); }

  // one chart per host key, a line per node on the union of the nodes' bucket times
  nodeCards(nodes) {
    const byKey = new Map();
    for (const n of nodes) for (const k of n.keys) byKey.set(k.key, [...(byKey.get(k.key) || []), [n.node, k]]);
    return [...byKey].map(([key, list]) => {
      const xs = [...new Set(list.flatMap(([, k]) => k.t))].sort((a, b) => a - b);
      const cols = list.map(([, k]) => { const at = new Map(k.t.map((t, i) => [t, k.values[i]])); return xs.map((t) => at.get(t) ?? null); });
      return { id: `host:${key}`, title: key, xs, cols, fmt: unitOf(key),
        series: list.map(([node], i) => [node, `hsl(${(i * 137.5) % 360},55%,${palette().node}%)`, 1.5]), band: false };
    });
  }

  draw(c) {
    let have = this.plots.get(c.id);
    const shape = c.series.map((s) => s[0]).join(",");
    if (!have) {
      const plot = el("div", { class: "plot" });
      const card = el("section", { class: "card scard", "data-key": c.id }, el("h3", {}, el("span", { text: c.title })), plot);
      this.root.append(card);
      have = { card, plot, u: null, shape: "" };
      this.plots.set(c.id, have);
    }
    const data = [c.xs, ...c.cols];
    have.card.dataset.points = String(c.xs.length);
    if (have.u && have.shape === shape) { have.u.setData(data); return; }
    if (have.u) have.u.destroy();
    have.shape = shape;
    const t = themeColors();
    const axis = { stroke: t.fg, grid: { stroke: t.grid, width: 1 }, ticks: { stroke: t.grid, width: 1 } };
    have.card.dataset.axisColor = t.fg;
    have.u = new uPlot({
      width: Math.max(200, have.plot.clientWidth || 400), height: 180, legend: { show: c.band ? false : true },
      scales: { x: { time: true } },
      series: [{ label: "time" }, ...c.series.map(([label, stroke, width]) => ({ label, stroke, width, spanGaps: true, points: { show: false } }))],
      bands: c.band ? [{ series: [2, 1], fill: palette().band }] : [],
      axes: [axis, { ...axis, size: axisSize, values: (u, vals) => vals.map(c.fmt) }],
    }, data, have.plot);
  }

  resize() { for (const p of this.plots.values()) if (p.u) p.u.setSize({ width: Math.max(200, p.plot.clientWidth || 400), height: 180 }); }

  destroy() { this.seq += 1; window.removeEventListener("rw-theme", this.onTheme); for (const p of this.plots.values()) if (p.u) p.u.destroy(); this.plots.clear(); }
}
