// Straggler panel: per-rank step time (seconds between a rank's consecutive commits, from its _timestamp
// history) or any per-rank key, as a heat map (ranks × step buckets, mean per cell) or as lines; the slowest
// ranks are named: only those meaningfully above the median rank (SLOW_RATIO). The lines view has numeric
// step ticks and a hover readout; on a tall map every k-th rank keeps a label; grey cells are explained.
// Colours follow the theme (theme.js): axes, grid and the empty-cell grey; redrawn on "rw-theme".
import { get, groupPath } from "./api.js";
import { el, num, axisSize } from "./fmt.js";
import { themeColors, isDark } from "./theme.js";
import { stepRange } from "./viewstate.js";

// viridis, 9 stops
const STOPS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129],
  [92, 200, 99], [170, 220, 50], [253, 231, 37]];

function color(t) {
  const x = Math.min(1, Math.max(0, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x)), f = x - i;
  return STOPS[i].map((c, k) => Math.round(c + f * (STOPS[i + 1][k] - c)));
}

function quantile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.round(q * (sorted.length - 1))))];
}

// a cell of no value (the rank logged nothing in this step bucket): light grey, or a grey above the dark background
const emptyCell = () => (isDark() ? [60, 66, 76] : [235, 235, 235]);
const SLOW_RATIO = 1.05; // a rank this much slower than the median rank is called a straggler

export class StragglerPanel {
  constructor(page) {
    this.page = page;
    this.seq = 0;
    this.data = null;
    this.slow = new Set();
    this.u = null;
    const save = () => { if (typeof this.page.saveState === "function") this.page.saveState(); };
    this.metric = el("select", { id: "straggler-metric", onchange: () => { save(); this.load(); } },
      el("option", { value: "auto", text: "auto: the timing that separates ranks most" }),
      el("option", { value: "_timestamp", text: "step time (from each rank's _timestamp)" }));
    this.view = el("select", { id: "straggler-view", onchange: () => { save(); this.render(); } },
      el("option", { value: "heatmap", text: "heat map" }), el("option", { value: "lines", text: "lines" }));
    this.canvas = el("canvas", { id: "heatmap" });
    this.labels = el("div", { class: "ranklabels" });
    this.heat = el("div", { class: "heat" }, this.labels, this.canvas);
    this.lines = el("div", { class: "lines" });
    this.scale = el("div", { class: "legend-scale" });
    this.slowest = el("p", { class: "slowest", id: "slowest" });
    this.hover = el("div", { class: "readout muted" });
    this.root = el("section", { class: "straggler", id: "stragglers" },
      el("div", { class: "controls" }, el("label", {}, "metric ", this.metric), el("label", {}, "view ", this.view), this.scale),
      this.heat, this.lines, this.hover, this.slowest);
    this.canvas.addEventListener("mousemove", (e) => this.onHover(e));
    this.onTheme = () => this.render();
    window.addEventListener("rw-theme", this.onTheme);
  }

  setKeys(keys) {
    const have = new Set([...this.metric.options].map((o) => o.value));
    for (const k of keys) if (!have.has(k)) this.metric.append(el("option", { value: k, text: k }));
  }

  async load() {
    const seq = ++this.seq;
    const params = { key: this.metric.value, width: Math.max(20, Math.min(600, Math.round((this.root.clientWidth || 600) / 3))) };
    const r = stepRange(this.page.state);
    if (r) { params.start = Math.floor(r[0]); params.end = Math.ceil(r[1]); }
    let data;
    try {
      data = await get(groupPath(this.page.project, this.page.group, "stragglers"), params);
    } catch (err) {
      if (seq === this.seq) this.slowest.textContent = `error: ${err.message}`;
      return;
    }
    if (seq !== this.seq) return;
    this.data = data;
    this.render();
  }

  unit(v) {
    if (v === null || v === undefined) return "–";
    return this.data.unit === "s" ? `${num(v * 1000)} ms` : num(v);
  }

  render() {
    const d = this.data;
    if (!d) return;
    const heat = this.view.value === "heatmap";
    this.heat.style.display = heat ? "" : "none";
    this.lines.style.display = heat ? "none" : "";
    if (heat) this.drawHeat(); else this.drawLines();
    const what = (d.metric === "step_time" ? "step time" : d.metric) + (d.auto ? " (chosen automatically)" : "");
    const out = d.slowest.filter((s) => s.ratio >= SLOW_RATIO);
    const clear = out.map((s) => s.rank);
    const parts = out.map((s) => `rank ${s.rank} (${s.name} on ${s.node}): ${this.unit(s.mean)} mean` +
      `, ${s.ratio.toFixed(2)}× the median rank`);
    const top = d.slowest[0];
    const none = !top ? "no data yet" : `no rank stands out (every rank within ${Math.round((SLOW_RATIO - 1) * 100)}% of the median` +
      (top.ratio ? `; highest: rank ${top.rank} at ${top.ratio.toFixed(2)}×)` : ")");
    this.slowest.replaceChildren(el("strong", { text: `Slowest by mean ${what}: ` }), parts.join("; ") || none);
    this.slow = new Set(clear.slice(0, 1));
    this.page.markSlowest(clear);
  }

  drawHeat() {
    const d = this.data, rows = d.ranks, cols = rows.length ? rows[0].cells.length : 0;
    const cv = this.canvas;
    const rowH = Math.max(4, Math.min(18, Math.floor(240 / Math.max(1, rows.length))));
    cv.width = Math.max(1, cols);
    cv.height = Math.max(1, rows.length);
    cv.style.height = `${rows.length * rowH}px`;
    const slow = this.slow;
    // a rank with an alert (hang, straggler, crashed: alerts.js) is flagged here too, its messages on hover
    const flagged = (rank) => (this.page.alerts ? this.page.alerts.forRank(rank) : []);
    // rows too thin for a label each: every k-th row keeps one (its text spills over the rows below)
    const every = rowH >= 9 ? 1 : Math.ceil(12 / rowH);
    this.labels.replaceChildren(...rows.map((r, i) => {
      const mine = flagged(r.rank);
      const shown = i % every === 0;
      return el("div", { class: [slow.has(r.rank) ? "slow" : "", mine.length ? "alerted" : "", shown && every > 1 ? "sparse" : ""].join(" ").trim() || null,
        "data-rank": r.rank, title: mine.map((a) => a.message).join("\n") || `rank ${r.rank}`,
        style: `height:${rowH}px;line-height:${every > 1 ? 12 : rowH}px`, text: shown ? `${mine.length ? "⚠ " : ""}rank ${r.rank}` : "" });
    }));
    this.labels.dataset.every = String(every);
    const all = rows.flatMap((r) => r.cells.filter((v) => v !== null)).sort((a, b) => a - b);
    // robust colour range: a single outlier must not wash out the map
    this.lo = quantile(all, 0.02); this.hi = quantile(all, 0.98);
    // differences under 0.1 % of the median are float noise (timestamps near 1.7e9 s), not a colour step
    const span = Math.max(this.hi - this.lo, 1e-3 * Math.abs(quantile(all, 0.5) || 0)) || 1;
    const ctx = cv.getContext("2d");
    const img = ctx.createImageData(cv.width, cv.height);
    const EMPTY = emptyCell();
    cv.dataset.empty = EMPTY.join(",");
    rows.forEach((r, y) => r.cells.forEach((v, x) => {
      const o = (y * cv.width + x) * 4;
      const [R, G, B] = v === null ? EMPTY : color((v - this.lo) / span);
      img.data[o] = R; img.data[o + 1] = G; img.data[o + 2] = B; img.data[o + 3] = 255;
    }));
    ctx.putImageData(img, 0, 0);
    const bar = el("canvas", { width: 64, height: 1 });
    const bctx = bar.getContext("2d");
    for (let i = 0; i < 64; i++) { const [R, G, B] = color(i / 63); bctx.fillStyle = `rgb(${R},${G},${B})`; bctx.fillRect(i, 0, 1, 1); }
    const empty = rows.some((r) => r.cells.some((v) => v === null));
    this.scale.replaceChildren(this.unit(this.lo), bar, this.unit(this.hi),
      empty ? el("span", { class: "nocell", id: "heat-empty" }, el("i", { style: `background:rgb(${EMPTY.join(",")})` }),
        "no value in this bucket") : "");
  }

  drawLines() {
    const d = this.data;
    const xs = d.edges.slice(0, -1);
    const slow = this.slow;
    const opts = {
      width: Math.max(200, this.root.clientWidth - 20), height: 220, legend: { show: false },
      scales: { x: { time: false } }, // steps, not seconds since 1970
      cursor: { drag: { x: false, y: false } },
      hooks: { setCursor: [(u) => this.lineReadout(u.cursor.idx)] },
      series: [{ label: "step" }, ...d.ranks.map((r, i) => ({
        label: `rank ${r.rank}`, spanGaps: true, points: { show: false },
        stroke: slow.has(r.rank) ? "#dc2626" : `hsla(${(i * 137.5) % 360},35%,50%,0.6)`, width: slow.has(r.rank) ? 2 : 1 }))],
      axes: [{ ...this.axis(), values: (u, vals) => vals.map((v) => (Number.isInteger(v) ? String(v) : num(v))) },
        { ...this.axis(), size: axisSize, values: (u, vals) => vals.map((v) => this.unit(v)) }],
    };
    this.lines.dataset.axisColor = themeColors().fg;
    if (this.u) this.u.destroy();
    this.u = new uPlot(opts, [xs, ...d.ranks.map((r) => r.cells)], this.lines);
    this.scale.replaceChildren();
  }

  axis() {
    const t = themeColors();
    return { stroke: t.fg, grid: { stroke: t.grid, width: 1 }, ticks: { stroke: t.grid, width: 1 } };
  }

  // lines view: the bucket under the cursor and every rank's value in it, highest first
  lineReadout(idx) {
    const d = this.data;
    if (!d || idx === null || idx === undefined) { this.hover.textContent = ""; return; }
    const vals = d.ranks.map((r) => [r.rank, r.cells[idx]]).filter(([, v]) => v !== null).sort((a, b) => b[1] - a[1]);
    const shown = vals.slice(0, 8).map(([r, v]) => `rank ${r} ${this.unit(v)}`).join(" · ");
    const lo = Math.round(d.edges[idx]), hi = Math.round(d.edges[idx + 1]);
    this.hover.textContent = (hi > lo ? `steps ${lo}–${hi}: ` : `step ${lo}: `) +
      (shown || "no value") + (vals.length > 8 ? ` · … ${vals.length - 8} more` : "");
  }

  onHover(e) {
    const d = this.data;
    if (!d || !d.ranks.length) return;
    const box = this.canvas.getBoundingClientRect();
    const col = Math.floor(((e.clientX - box.left) / box.width) * this.canvas.width);
    const row = Math.floor(((e.clientY - box.top) / box.height) * this.canvas.height);
    const r = d.ranks[row];
    if (!r || col < 0 || col >= r.cells.length) return;
    this.hover.textContent = `rank ${r.rank} (${r.name}), steps ${Math.round(d.edges[col])}–${Math.round(d.edges[col + 1])}: ${this.unit(r.cells[col])}`;
  }

  resize() { if (this.u && this.view.value === "lines") this.u.setSize({ width: Math.max(200, this.root.clientWidth - 20), height: 220 }); }

  destroy() { this.seq += 1; window.removeEventListener("rw-theme", this.onTheme); if (this.u) this.u.destroy(); }
}
