// Histogram panel: a key's histograms over steps as a heat map (x: steps, y: the value axis, colour: the density of
// each bin relative to the densest bin of its step), merged over the ranks at each step (the server merges with
// grouping.histogram.merge_histograms) or one rank's own. Long runs: the server sends at most one column per two
// pixels, chosen evenly among the logged steps; zooming on the step axis narrows the range. Colours follow the
// theme (theme.js): on dark, low density is near the background and high density bright; text and frame
// from the theme's colours; redrawn on "rw-theme".
import { get, groupPath } from "./api.js";
import { el, num } from "./fmt.js";
import { stepRange } from "./viewstate.js";
import { themeColors, isDark } from "./theme.js";

const LIGHT = [[255, 255, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];
const DARK = [[13, 17, 23], [22, 52, 94], [33, 102, 172], [92, 162, 232], [206, 232, 255]];
function color(t) {
  const STOPS = isDark() ? DARK : LIGHT;
  const x = Math.min(1, Math.max(0, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x)), f = x - i;
  return STOPS[i].map((c, k) => Math.round(c + f * (STOPS[i + 1][k] - c)));
}

const H = 220;
const M = { l: 52, r: 8, t: 6, b: 22 };

export class HistogramPanel {
  constructor(page, info) {
    this.page = page;
    this.key = info.key;
    this.info = info;
    this.seq = 0;
    this.stale = true;
    this.visible = false;
    this.data = null;
    this.meta = el("span", { class: "meta" });
    this.rank = el("select", { class: "hrank", onchange: () => this.load() });
    this.ranksFilled = -1;
    this.canvas = el("canvas", { class: "hheat" });
    this.readout = el("div", { class: "readout" });
    this.card = el("section", { class: "card mcard", "data-key": info.key, "data-type": "histogram", "data-state": "new" },
      el("h3", {}, el("span", { text: info.key }), el("span", { class: "mtype", text: "histogram" }), this.meta),
      el("div", { class: "mcontrols" }, el("label", {}, "show ", this.rank)),
      this.canvas, this.readout);
    this.card.rwPanel = this;
    this.canvas.addEventListener("mousemove", (e) => this.onHover(e));
    this.canvas.addEventListener("mouseleave", () => this.showInfo());
    this.onTheme = () => { if (this.data) this.render(); };
    window.addEventListener("rw-theme", this.onTheme);
    this.fillRanks();
  }

  fillRanks() {
    const runs = (this.page.detail && this.page.detail.runs) || [];
    if (runs.length === this.ranksFilled) return;
    const keep = this.rank.value || "merged";
    this.rank.replaceChildren(el("option", { value: "merged", text: "merged over ranks" }),
      ...runs.map((r) => el("option", { value: String(r.rank), text: `rank ${r.rank}` })));
    this.rank.value = keep;
    this.ranksFilled = runs.length;
  }

  width() { return Math.max(200, Math.round(this.card.clientWidth - 18 || 400)); }

  async load() {
    const seq = ++this.seq;
    this.stale = false;
    this.fillRanks();
    const params = { key: this.key, rank: this.rank.value, width: Math.max(10, Math.min(2000, Math.floor((this.width() - M.l - M.r) / 2))) };
    const r = stepRange(this.page.state);
    if (r) { params.start = Math.floor(r[0]); params.end = Math.ceil(r[1]); }
    this.card.dataset.state = "loading";
    let data;
    try {
      data = await get(groupPath(this.page.project, this.page.group, "histograms"), params);
    } catch (err) {
      if (seq === this.seq) { this.readout.textContent = `error: ${err.message}`; this.card.dataset.state = "error"; }
      return;
    }
    if (seq !== this.seq) return;
    this.data = data;
    this.render();
  }

  render() {
    const d = this.data;
    if (!d) return;
    const w = this.width(), dpr = window.devicePixelRatio || 1;
    const c = this.canvas;
    c.width = Math.round(w * dpr); c.height = Math.round(H * dpr);
    c.style.width = `${w}px`; c.style.height = `${H}px`;
    const ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, H);
    ctx.font = "11px system-ui, sans-serif";
    const theme = { ...themeColors(), line: getComputedStyle(document.documentElement).getPropertyValue("--line").trim() };
    c.dataset.textColor = theme.muted;
    const cols = d.columns, n = cols.length;
    const pw = w - M.l - M.r, ph = H - M.t - M.b;
    this.geom = { pw, ph, n };
    let bins = 0;
    if (n && d.hi > d.lo) {
      const Y = (v) => M.t + ph - ((v - d.lo) / (d.hi - d.lo)) * ph;
      const cw = pw / n;
      cols.forEach((col, i) => {
        const dens = col.values.map((v, j) => (v || 0) / (col.bins[j + 1] - col.bins[j]));
        const top = Math.max(...dens) || 1;
        dens.forEach((v, j) => {
          if (!(v > 0)) return;
          const [r, g, b] = color(0.12 + 0.88 * (v / top));
          ctx.fillStyle = `rgb(${r},${g},${b})`;
          const y0 = Y(col.bins[j + 1]), y1 = Y(col.bins[j]);
          ctx.fillRect(M.l + i * cw, y0, Math.max(1, cw + 0.5), Math.max(1, y1 - y0 + 0.5));
          bins++;
        });
      });
      // axes: value on the left, steps below
      ctx.fillStyle = theme.muted; ctx.strokeStyle = theme.line;
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      for (let k = 0; k <= 4; k++) { const v = d.lo + ((d.hi - d.lo) * k) / 4; ctx.fillText(num(v), M.l - 4, Y(v)); }
      ctx.textAlign = "center"; ctx.textBaseline = "top";
      const every = Math.max(1, Math.ceil(n / Math.max(1, Math.floor(pw / 70))));
      for (let i = 0; i < n; i += every) ctx.fillText(String(cols[i].step), M.l + (i + 0.5) * cw, M.t + ph + 4);
      ctx.strokeRect(M.l, M.t, pw, ph);
    } else {
      ctx.fillStyle = theme.muted; ctx.fillText("no histograms in this range", M.l, M.t + 20);
    }
    c.dataset.columns = String(n);
    c.dataset.bins = String(bins);
    this.showInfo();
    this.card.dataset.state = "ready";
    window.rw.mediaRenders = (window.rw.mediaRenders || 0) + 1;
  }

  showInfo() {
    const d = this.data;
    if (!d) return;
    const who = d.rank === null ? `merged over the ranks (of ${d.expected})` : `rank ${d.rank}`;
    const thin = d.shown < d.steps ? `${d.shown} of ${d.steps} steps shown` : `${d.steps} step(s)`;
    this.meta.textContent = `${thin} · ${who}`;
    this.readout.textContent = "colour: density of each bin relative to the densest bin of its step";
  }

  onHover(e) {
    const d = this.data, g = this.geom;
    if (!d || !g || !g.n || !(d.hi > d.lo)) return;
    const r = this.canvas.getBoundingClientRect();
    const i = Math.floor(((e.clientX - r.left - M.l) / g.pw) * g.n);
    const v = d.lo + (1 - (e.clientY - r.top - M.t) / g.ph) * (d.hi - d.lo);
    if (i < 0 || i >= g.n) { this.showInfo(); return; }
    const col = d.columns[i];
    const j = col.bins.findIndex((b, k) => k < col.bins.length - 1 && v >= b && v < col.bins[k + 1]);
    const total = col.values.reduce((a, b) => a + b, 0);
    const ranks = d.rank === null ? ` · ranks ${col.ranks.join(",")} (${col.ranks.length}/${d.expected})` : "";
    this.readout.textContent = j < 0 ? `step ${col.step} · total ${num(total)}${ranks}`
      : `step ${col.step} · [${num(col.bins[j])}, ${num(col.bins[j + 1])}): ${num(col.values[j])} of ${num(total)}${ranks}`;
  }

  resize() { if (this.data) this.render(); }

  destroy() { this.seq += 1; window.removeEventListener("rw-theme", this.onTheme); }
}
