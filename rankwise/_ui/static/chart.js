// One chart per key: the mean over ranks with a min–max band, per-rank lines on demand. The server sends
// at most two rows per pixel column (each bucket's extremes), so spikes stay; zooming asks it again for the
// narrower range, down to every point. Steps where ranks logged NaN/±inf (group rows' nan_count, when the
// store has it) get a red tick under the plot; alerts about this key (alerts.js) a vertical marker at their step.
// Per-rank lines: colours, legend, rank picker and hover list in ranks.js; CSV/PNG in download.js; axis
// colours follow the theme (theme.js). Smoothing runs here on the points the chart holds (docs/ui.md
// "Smoothing"), with the raw mean faded beneath.
import { get, groupPath } from "./api.js";
import { el, num, axisSize } from "./fmt.js";
import { xAxis, xText } from "./xaxis.js";
import { rankColors, legend, rankReadout, MIN_COLOR, MAX_COLOR } from "./ranks.js";
import { downloadCsv, downloadPng } from "./download.js";
import { themeColors } from "./theme.js";

const COLORS = { mean: "#0b6bcb", raw: "rgba(11,107,203,0.28)", edge: "rgba(11,107,203,0.35)", band: "rgba(11,107,203,0.16)", min: MIN_COLOR, max: MAX_COLOR };

// Exponential moving average with TensorBoard's debiasing; gaps (null) stay gaps.
export function smooth(values, alpha) {
  if (!alpha) return values;
  let last = 0, n = 0;
  return values.map((v) => {
    if (v === null || !Number.isFinite(v)) return v;
    last = last * alpha + (1 - alpha) * v;
    n += 1;
    return last / (1 - Math.pow(alpha, n));
  });
}

// with smoothing on, a series of at most this many values (points × lines) is fetched at full resolution, so
// the EMA runs over every logged step and is the same at every chart width (docs/ui.md "Smoothing")
export const SMOOTH_FULL = 100_000;

const positive = (values) => values.map((v) => (v !== null && v > 0 ? v : null));

export class KeyChart {
  constructor(page, key, info) {
    this.page = page;
    this.key = key;
    this.info = info;
    this.seq = 0;
    this.stale = true;
    this.visible = false;
    this.data = null;
    this.u = null;
    this.shape = "";
    this.meta = el("span", { class: "meta" });
    this.warn = el("span", { class: "warn" });
    this.plot = el("div", { class: "plot" });
    this.readout = el("div", { class: "readout" });
    this.legendBox = el("div", { class: "legend" });
    this.hidden = new Set(); // ranks hidden from the legend (this chart only)
    const dl = (text, fn) => el("button", { type: "button", class: `dl dl-${text.toLowerCase()}`, text, title: `download this chart as ${text}`, onclick: fn });
    this.card = el("section", { class: "card", "data-key": key },
      el("h3", {}, el("span", { text: key }), this.warn, this.meta, dl("CSV", () => this.csv()), dl("PNG", () => this.png())),
      this.plot, this.readout, this.legendBox);
    this.onTheme = () => { this.shape = ""; this.render(); };
    window.addEventListener("rw-theme", this.onTheme);
  }

  // a rank's line is drawn when the picker allows it and the legend does not hide it
  shows(rank) {
    const pick = this.page.pickSet ? this.page.pickSet() : null;
    return (!pick || pick.has(rank)) && !this.hidden.has(rank);
  }

  // legend: click hides/shows a rank; shift-click shows it alone, and shift-click on the lone rank shows all
  toggle(rank, isolate) {
    const ranks = (this.data.ranks || []).map((r) => r.rank);
    if (isolate) {
      const alone = ranks.every((r) => r === rank || this.hidden.has(r)) && !this.hidden.has(rank);
      this.hidden = new Set(alone ? [] : ranks.filter((r) => r !== rank));
    } else if (this.hidden.has(rank)) this.hidden.delete(rank);
    else this.hidden.add(rank);
    this.applyShown();
  }

  applyShown() {
    const ranks = (this.data && this.data.ranks) || [];
    if (!this.u) return;
    ranks.forEach((r, i) => {
      const show = this.shows(r.rank);
      if (this.u.series[3 + i].show !== show) this.u.setSeries(3 + i, { show });
    });
    const colors = rankColors(ranks.map((r) => r.rank), this.page.pickSet ? this.page.pickSet() : null, this.data.min_rank_mode, this.data.max_rank_mode);
    this.colors = colors;
    this.legendBox.replaceChildren(...legend(ranks.map((r) => r.rank), colors, (r) => this.shows(r), (r, iso) => this.toggle(r, iso)));
    this.card.dataset.shown = ranks.filter((r) => this.shows(r.rank)).map((r) => r.rank).join(",");
  }

  exactSmoothing() {
    const lines = 1 + (this.page.state.ranks ? (this.page.detail ? this.page.detail.world_size : 1) : 0);
    return (this.info.points || 0) * lines <= SMOOTH_FULL;
  }

  // the series endpoint's query (docs/ui.md); a chart of one rank (rank.js) asks for that rank's line only
  seriesParams(params) { return params; }

  width() { return Math.max(100, Math.min(4000, Math.round(this.plot.clientWidth || 400))); }

  async load() {
    const seq = ++this.seq;
    this.stale = false;
    const s = this.page.state;
    const params = { key: this.key, x: s.axis, width: this.width(), ranks: s.ranks ? 1 : 0 };
    if (s.range) { params.start = s.range[0]; params.end = s.range[1]; }
    if (s.smooth && this.exactSmoothing()) params.width = 0; // 0: every point (the server does not bucket)
    let data;
    try {
      this.asked = this.seriesParams(params);
      data = await get(groupPath(this.page.project, this.page.group, "series"), this.asked);
    } catch (err) {
      if (seq === this.seq) this.readout.textContent = `error: ${err.message}`;
      return;
    }
    if (seq !== this.seq) return; // a newer request superseded this one
    this.data = data;
    this.render();
  }

  render() {
    const d = this.data;
    if (!d) return;
    const s = this.page.state;
    const xs = d.axis === "time" ? d.x.map((v) => d.t0 + v) : d.x;
    const y = (values) => (s.log ? positive(values) : values);
    const ranks = d.ranks || [];
    // series order: band edges, ranks, then the mean last so that it is drawn on top
    // smoothing applies to the band too, or the lagging mean would leave a band that does not lag
    const sm = (values) => y(smooth(values, s.smooth));
    const raw = s.smooth ? [y(d.mean)] : []; // the unsmoothed mean, faded beneath the smoothed one
    const cols = [xs, sm(d.min), sm(d.max), ...ranks.map((r) => sm(r.values)), ...raw, sm(d.mean)];
    const pick = s.pick ? [...s.pick].join(",") : "";
    const shape = [d.axis, s.log, !!s.smooth, pick, ranks.map((r) => r.rank).join(","), d.min_rank_mode, d.max_rank_mode].join("|");
    if (!this.u || shape !== this.shape) {
      if (this.u) this.u.destroy();
      this.u = new uPlot(this.options(d, ranks), cols, this.plot);
      this.shape = shape;
    } else {
      this.u.setData(cols);
    }
    const res = d.resolution === "full" ? "every point" : `min/max of ${d.buckets} buckets`;
    this.meta.textContent = `${d.points.toLocaleString()} steps · ${res}`;
    this.meta.title = d.resolution === "full" ? "" : "each pixel column keeps its lowest and highest value, so spikes stay visible; zoom in for every point";
    // smoothing is exact (the EMA of every logged step) only on full-resolution data; else it runs over bucket extremes
    this.card.dataset.smoothExact = String(!s.smooth || d.resolution === "full");
    if (s.smooth && d.resolution !== "full") this.meta.title += "; smoothing runs over these bucketed points: zoom in to every point for the exact EMA";
    this.warn.textContent = this.nanText(d);
    this.applyShown();
    this.card.dataset.series = String(this.u.series.length - 1);
    this.card.dataset.points = String(xs.length);
    this.card.dataset.resolution = d.resolution;
    this.showReadout(null);
    window.rw.renders = (window.rw.renders || 0) + 1;
  }

  options(d, ranks) {
    const page = this.page;
    const colors = rankColors(ranks.map((r) => r.rank), page.pickSet ? page.pickSet() : null, d.min_rank_mode, d.max_rank_mode);
    const rankSeries = ranks.map((r) => {
      const color = colors.get(r.rank);
      const loud = !color.startsWith("rgba");
      return { label: `rank ${r.rank}`, stroke: color, width: loud ? 1.5 : 1, show: this.shows(r.rank),
        spanGaps: true, points: { show: false } };
    });
    const raw = page.state.smooth ? [{ label: "mean (raw)", stroke: COLORS.raw, width: 1, spanGaps: true, points: { show: false } }] : [];
    const t = themeColors();
    const axis = { stroke: t.fg, grid: { stroke: t.grid, width: 1 }, ticks: { stroke: t.grid, width: 1 } };
    this.card.dataset.axisColor = t.fg;
    return {
      width: this.width(),
      height: 200,
      legend: { show: false },
      scales: { x: { time: d.axis === "time" }, y: { distr: page.state.log ? 3 : 1 } },
      series: [
        { label: d.x_key || d.axis },
        { label: "min", stroke: COLORS.edge, width: 1, spanGaps: true, points: { show: false } },
        { label: "max", stroke: COLORS.edge, width: 1, spanGaps: true, points: { show: false } },
        ...rankSeries,
        ...raw,
        { label: "mean", stroke: COLORS.mean, width: 2, spanGaps: true, points: { show: false } },
      ],
      bands: [{ series: [2, 1], fill: COLORS.band }],
      axes: [{ ...axis, ...xAxis(d) }, { ...axis, size: axisSize, values: (u, vals) => vals.map(num) }],
      cursor: {
        // one cursor across the page's charts, but a drag stays on its chart: uPlot publishes mousedown/mouseup
        // to the synced charts too, and each would turn the drag into a zoom range in its own x units
        sync: { key: `rw:${page.project}/${page.group}`, filters: { pub: (type) => type !== "mousedown" && type !== "mouseup" } },
        drag: { x: true, y: false, setScale: false },
        bind: { dblclick: () => null },
      },
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 4) return;
          const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          const off = this.data.axis === "time" ? this.data.t0 : 0;
          page.setRange([a - off, b - off], this); // the range is in this chart's x units
        }],
        setCursor: [(u) => this.showReadout(u.cursor.idx)],
        ready: [(u) => u.over.addEventListener("dblclick", () => page.setRange(null))],
        draw: [(u) => { this.drawNan(u); this.drawMarkers(u); }],
      },
    };
  }

  // header warning: with NaN-aware group rows, which rank turned non-finite from which x; else the old count
  nanText(d) {
    const nc = d.nan_count;
    if (!nc) return d.nonfinite ? `${d.nonfinite} NaN/inf` : "";
    const first = nc.findIndex((v) => v > 0);
    this.card.dataset.nanFirst = first < 0 ? "" : String(d.x[first]);
    if (first < 0) return "";
    const most = Math.max(...nc.filter((v) => v !== null));
    const rank = d.nan_rank && d.nan_rank[first] >= 0 ? ` (rank ${d.nan_rank[first]})` : "";
    const at = d.axis === "step" ? `step ${d.x[first]}` : `+${num(d.x[first])}`;
    this.warn.title = "band and mean are over the ranks whose value is finite; the red ticks under the plot mark the non-finite steps";
    return `${most} rank${most === 1 ? "" : "s"} non-finite from ${at}${rank}`;
  }

  // a red tick under the plot at each x where a rank's value is NaN/±inf (one per pixel column)
  drawNan(u) {
    const d = this.data, nc = d && d.nan_count;
    if (!nc) return;
    const ctx = u.ctx, { left, top, width, height } = u.bbox;
    const xs = u.data[0];
    ctx.save();
    ctx.fillStyle = "rgba(207,34,46,0.85)";
    let last = -1;
    for (let i = 0; i < nc.length; i++) {
      if (!(nc[i] > 0)) continue;
      const px = Math.round(u.valToPos(xs[i], "x", true));
      if (px === last || px < left || px > left + width) continue;
      ctx.fillRect(px, top + height - 4 * devicePixelRatio, Math.max(1, devicePixelRatio), 4 * devicePixelRatio);
      last = px;
    }
    ctx.restore();
  }

  // alert markers: DOM lines over the plot (hover shows the message), at markerX of each alert
  drawMarkers(u) {
    let box = this.markBox;
    if (!box || box.parentNode !== u.over) {
      box = this.markBox = el("div", { class: "amarks" });
      u.over.append(box);
    }
    const alerts = this.page.alerts ? this.page.alerts.markersFor(this.key) : [];
    const lo = u.scales.x.min, hi = u.scales.x.max;
    const placed = alerts.map((a) => [a, this.markerX(a)]).filter(([, x]) => x !== null && x !== undefined && x >= lo && x <= hi);
    box.replaceChildren(...placed.map(([a, x]) =>
      el("div", { class: `amark ${String(a.level).toLowerCase()}`, "data-step": a.step, "data-kind": a.kind, "data-x": x,
        "data-rank": a.rank ?? null, title: a.message, style: `left:${u.valToPos(x, "x")}px` })));
    this.card.dataset.markers = String(box.childElementCount);
  }

  // an alert's x on this chart: its step on the step axis; other axes: none here (the group page's charts
  // place them through the alerts endpoint's x=, groupchart.js)
  markerX(a) { return this.data && this.data.axis === "step" ? a.step : null; }

  showReadout(idx) {
    const d = this.data;
    if (!d) return;
    if (idx === null || idx === undefined) {
      const hi = [];
      if (d.min_rank_mode !== null) hi.push(`lowest most often: rank ${d.min_rank_mode}`);
      if (d.max_rank_mode !== null) hi.push(`highest most often: rank ${d.max_rank_mode}`);
      this.readout.replaceChildren(
        el("span", { class: "swatch", style: `background:${COLORS.min}` }), hi[0] || "", " ",
        el("span", { class: "swatch", style: `background:${COLORS.max}` }), hi[1] || "");
      return;
    }
    const x = xText(d.axis, d.x[idx], d.t0);
    const parts = [x, `mean ${num(d.mean[idx])}`, `[${num(d.min[idx])}, ${num(d.max[idx])}]`];
    if (d.count[idx] !== null) parts.push(`${d.count[idx]}/${d.expected} ranks`);
    if (d.min_rank && d.min_rank[idx] !== null) parts.push(`min r${d.min_rank[idx]} · max r${d.max_rank[idx]}`);
    const nc = d.nan_count && d.nan_count[idx];
    if (nc > 0) {
      const r = d.nan_rank && d.nan_rank[idx] >= 0 ? ` (rank ${d.nan_rank[idx]}${nc > 1 ? " and others" : ""})` : "";
      parts.push(`${nc} rank${nc === 1 ? "" : "s"} non-finite${r}`);
    }
    const list = (d.ranks || []).length ? rankReadout(d.ranks.filter((r) => this.shows(r.rank))
      .map((r) => ({ rank: r.rank, value: r.values[idx], color: this.colors ? this.colors.get(r.rank) : COLORS.mean }))) : null;
    this.readout.replaceChildren(el("div", { text: parts.join("  ") }), list || "");
  }

  // what the chart holds: x, mean, min, max, each visible rank, and the smoothed mean when smoothing is on
  columns(d = this.data) {
    const s = this.page.state;
    const cols = [[d.x_key || (d.axis === "time" ? "seconds" : d.axis), d.x], ["mean", d.mean], ["min", d.min], ["max", d.max]];
    for (const r of d.ranks || []) if (this.shows(r.rank)) cols.push([`rank ${r.rank}`, r.values]);
    if (s.smooth) cols.push([`mean smoothed ${s.smooth}`, smooth(d.mean, s.smooth)]);
    return cols;
  }

  // the chart's rank lines carry 6 significant digits (docs/ui.md): the file gets them as stored, from the same
  // request with digits=0 (the same points); the chart's own data if that fails
  async csv() {
    if (!this.data) return;
    let d = this.data;
    if ((d.ranks || []).length && this.asked) {
      try {
        d = await get(groupPath(this.page.project, this.page.group, "series"), { ...this.asked, digits: 0 });
      } catch (err) {
        d = this.data;
      }
    }
    downloadCsv(this.columns(d), `${this.page.group}-${this.key}`);
  }

  png() { if (this.u) downloadPng(this.u.ctx.canvas, themeColors().bg || "#ffffff", `${this.page.group}-${this.key}`); }

  resize() {
    if (this.u) this.u.setSize({ width: this.width(), height: 200 });
  }

  destroy() {
    this.seq += 1;
    window.removeEventListener("rw-theme", this.onTheme);
    if (this.u) this.u.destroy();
    this.u = null;
  }
}
