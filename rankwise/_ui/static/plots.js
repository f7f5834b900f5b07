// Charts of rankwise.plot / rankwise.plots values ({"_type": "chart", "kind", "title", "data"}, docs/media.md)
// and simple plotly traces, drawn on a canvas: curves (PR, ROC, line, scatter, line series) on linear axes with
// a legend and a hover readout, bars, binned raw values, confusion matrices and heat maps as cells. No library:
// each chart is a few hundred points, and curves need their own x per series (uPlot shares one x).
import { el, num } from "./fmt.js";

export const PALETTE = ["#0b6bcb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
  "#4b5563", "#65a30d"];
const H = 220;
const M = { l: 48, r: 10, t: 8, b: 30 };

function ticks(lo, hi, n = 5) {
  if (!(hi > lo)) { const d = Math.abs(lo) || 1; lo -= d / 2; hi += d / 2; }
  const raw = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return { lo, hi, ticks: out };
}

function setup(canvas, width, height) {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.font = "11px system-ui, sans-serif";
  return ctx;
}

const finite = (v) => typeof v === "number" && Number.isFinite(v);
const lowest = (a, d = 0) => (a.length ? a.reduce((x, y) => (y < x ? y : x)) : d);
const highest = (a, d = 1) => (a.length ? a.reduce((x, y) => (y > x ? y : x)) : d);

// Curves: series [{label, x, y, mode: "line" | "points", color, dash}]
export function curves(spec, width) {
  const canvas = el("canvas", { class: "mplot", "data-kind": spec.kind || "curves" });
  const readout = el("div", { class: "readout" });
  const legend = el("div", { class: "legend" }, spec.series.map((s, i) => (s.label === undefined || s.hidden ? null
    : el("span", {}, el("span", { class: "swatch", style: `background:${s.color || PALETTE[i % PALETTE.length]}` }), s.label))));
  const xs = spec.series.flatMap((s) => s.x.filter(finite)), ys = spec.series.flatMap((s) => s.y.filter(finite));
  const span = (v, fixed) => fixed || [lowest(v), highest(v)];
  const xr = ticks(...span(xs, spec.xRange)), yr = ticks(...span(ys, spec.yRange));
  const w = Math.max(160, width), ctx = setup(canvas, w, H);
  const pw = w - M.l - M.r, ph = H - M.t - M.b;
  const X = (v) => M.l + ((v - xr.lo) / (xr.hi - xr.lo)) * pw, Y = (v) => M.t + ph - ((v - yr.lo) / (yr.hi - yr.lo)) * ph;
  axes(ctx, xr, yr, X, Y, pw, ph, spec.xLabel, spec.yLabel);
  let points = 0;
  spec.series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    ctx.strokeStyle = color; ctx.fillStyle = color; ctx.lineWidth = s.width || 1.5;
    ctx.setLineDash(s.dash || []);
    if (s.mode === "points") {
      for (let j = 0; j < s.x.length; j++) if (finite(s.x[j]) && finite(s.y[j])) { ctx.fillRect(X(s.x[j]) - 1.5, Y(s.y[j]) - 1.5, 3, 3); points++; }
    } else {
      ctx.beginPath();
      let pen = false;
      for (let j = 0; j < s.x.length; j++) {
        if (!finite(s.x[j]) || !finite(s.y[j])) { pen = false; continue; }
        if (pen) ctx.lineTo(X(s.x[j]), Y(s.y[j])); else ctx.moveTo(X(s.x[j]), Y(s.y[j]));
        pen = true; points++;
      }
      ctx.stroke();
    }
  });
  ctx.setLineDash([]);
  canvas.dataset.series = String(spec.series.filter((s) => !s.hidden).length);
  canvas.dataset.points = String(points);
  canvas.addEventListener("mousemove", (e) => {
    const r = canvas.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
    let best = null;
    spec.series.forEach((s, i) => {
      if (s.hidden) return;
      for (let j = 0; j < s.x.length; j++) {
        if (!finite(s.x[j]) || !finite(s.y[j])) continue;
        const d = Math.hypot(X(s.x[j]) - mx, Y(s.y[j]) - my);
        if (!best || d < best.d) best = { d, s, j, i };
      }
    });
    if (!best || best.d > 30) { readout.textContent = ""; return; }
    const extra = best.s.extra ? best.s.extra(best.j) : "";
    readout.textContent = `${best.s.label ?? ""}  ${spec.xLabel || "x"} ${num(best.s.x[best.j])}  ${spec.yLabel || "y"} ${num(best.s.y[best.j])}${extra}`;
  });
  return el("div", { class: "chart" }, legend, canvas, readout);
}

function axes(ctx, xr, yr, X, Y, pw, ph, xLabel, yLabel) {
  ctx.strokeStyle = "#d0d7de"; ctx.fillStyle = "#656d76"; ctx.lineWidth = 1;
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (const t of xr.ticks) { const x = X(t); ctx.beginPath(); ctx.moveTo(x, M.t); ctx.lineTo(x, M.t + ph); ctx.stroke(); ctx.fillText(num(t), x, M.t + ph + 3); }
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (const t of yr.ticks) { const y = Y(t); ctx.beginPath(); ctx.moveTo(M.l, y); ctx.lineTo(M.l + pw, y); ctx.stroke(); ctx.fillText(num(t), M.l - 4, y); }
  ctx.textAlign = "center"; ctx.textBaseline = "bottom";
  if (xLabel) ctx.fillText(xLabel, M.l + pw / 2, M.t + ph + M.b);
  if (yLabel) { ctx.save(); ctx.translate(10, M.t + ph / 2); ctx.rotate(-Math.PI / 2); ctx.textBaseline = "middle"; ctx.fillText(yLabel, 0, 0); ctx.restore(); }
}

// Bars: labels and values (negative values go down from 0)
export function bars(labels, values, width, opts = {}) {
  const canvas = el("canvas", { class: "mplot", "data-kind": opts.kind || "bar" });
  const readout = el("div", { class: "readout" });
  const w = Math.max(160, width), ctx = setup(canvas, w, H);
  const pw = w - M.l - M.r, ph = H - M.t - M.b;
  const vals = values.map((v) => (finite(v) ? v : 0));
  const yr = ticks(Math.min(0, lowest(vals)), Math.max(0, highest(vals, 0)));
  const Y = (v) => M.t + ph - ((v - yr.lo) / (yr.hi - yr.lo)) * ph;
  const xr = { lo: 0, hi: 1, ticks: [] };
  axes(ctx, xr, yr, (v) => M.l + v * pw, Y, pw, ph, opts.xLabel, opts.yLabel);
  const n = Math.max(1, vals.length), bw = pw / n;
  ctx.fillStyle = PALETTE[0];
  vals.forEach((v, i) => {
    const y0 = Y(0), y1 = Y(v);
    ctx.fillRect(M.l + i * bw + bw * 0.1, Math.min(y0, y1), Math.max(1, bw * 0.8), Math.max(1, Math.abs(y1 - y0)));
  });
  ctx.fillStyle = "#656d76"; ctx.textAlign = "center"; ctx.textBaseline = "top";
  const every = Math.ceil(n / Math.max(1, Math.floor(pw / 50)));
  labels.forEach((l, i) => { if (i % every === 0) ctx.fillText(String(l).slice(0, 10), M.l + (i + 0.5) * bw, M.t + ph + 3); });
  canvas.dataset.series = "1";
  canvas.dataset.points = String(vals.length);
  canvas.addEventListener("mousemove", (e) => {
    const r = canvas.getBoundingClientRect(), i = Math.floor((e.clientX - r.left - M.l) / bw);
    readout.textContent = i >= 0 && i < n ? `${labels[i]}: ${num(values[i])}` : "";
  });
  return el("div", { class: "chart" }, canvas, readout);
}

// Cells: a matrix (rows × columns) coloured by value, with the numbers written in when they fit
export function cells(matrix, xLabels, yLabels, width, opts = {}) {
  const canvas = el("canvas", { class: "mplot", "data-kind": opts.kind || "heatmap" });
  const readout = el("div", { class: "readout" });
  const rows = matrix.length, cols = highest(matrix.map((r) => r.length), 0);
  const left = 70, top = 6, bottom = 40;
  const w = Math.max(160, width);
  const cw = (w - left - 10) / Math.max(1, cols);
  const chH = Math.max(H, Math.min(600, rows * 22 + top + bottom));
  const ch = (chH - top - bottom) / Math.max(1, rows);
  const ctx = setup(canvas, w, chH);
  const flat = matrix.flat().filter(finite);
  const lo = Math.min(0, lowest(flat)), hi = Math.max(1e-12, highest(flat));
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const v = matrix[i][j];
      const t = finite(v) ? (v - lo) / (hi - lo || 1) : null;
      ctx.fillStyle = t === null ? "#f6f8fa" : `rgba(11,107,203,${0.06 + 0.94 * t})`;
      ctx.fillRect(left + j * cw, top + i * ch, cw - 1, ch - 1);
      if (opts.text !== false && cw > 26 && ch > 12 && v !== null && v !== undefined) {
        ctx.fillStyle = t !== null && t > 0.55 ? "#fff" : "#1f2328";
        ctx.textAlign = "center"; ctx.textBaseline = "middle";
        ctx.fillText(num(v), left + (j + 0.5) * cw, top + (i + 0.5) * ch);
      }
    }
  }
  ctx.fillStyle = "#656d76"; ctx.textAlign = "right"; ctx.textBaseline = "middle";
  yLabels.forEach((l, i) => { if (ch >= 9) ctx.fillText(String(l).slice(0, 10), left - 4, top + (i + 0.5) * ch); });
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  xLabels.forEach((l, j) => { if (cw >= 20) ctx.fillText(String(l).slice(0, 8), left + (j + 0.5) * cw, top + rows * ch + 3); });
  if (opts.xLabel) { ctx.textBaseline = "bottom"; ctx.fillText(opts.xLabel, left + (cols * cw) / 2, chH); }
  canvas.dataset.series = String(rows);
  canvas.dataset.points = String(rows * cols);
  canvas.addEventListener("mousemove", (e) => {
    const r = canvas.getBoundingClientRect();
    const j = Math.floor((e.clientX - r.left - left) / cw), i = Math.floor((e.clientY - r.top - top) / ch);
    readout.textContent = i >= 0 && i < rows && j >= 0 && j < cols
      ? `${opts.yName || "row"} ${yLabels[i]} · ${opts.xName || "column"} ${xLabels[j]}: ${num(matrix[i][j])}` : "";
  });
  return el("div", { class: "chart" }, canvas, readout);
}

function binned(values, bins = 30) {
  const v = values.filter(finite);
  if (!v.length) return { labels: [], counts: [] };
  let lo = lowest(v), hi = highest(v);
  if (hi === lo) { lo -= 0.5; hi += 0.5; }
  const counts = new Array(bins).fill(0);
  for (const x of v) counts[Math.min(bins - 1, Math.floor(((x - lo) / (hi - lo)) * bins))]++;
  return { labels: counts.map((_, i) => num(lo + ((i + 0.5) * (hi - lo)) / bins)), counts };
}

// One rankwise.plot chart value → a node
export function chart(value, width) {
  const d = value.data || {};
  const title = value.title ? el("div", { class: "ctitle", text: value.title }) : null;
  let body;
  switch (value.kind) {
    case "pr_curve":
      body = curves({ kind: "pr_curve", xLabel: d.x_label || "recall", yLabel: d.y_label || "precision", xRange: [0, 1], yRange: [0, 1],
        series: (d.classes || []).map((c) => ({ label: `${c.label} (AP ${num(c.average_precision)})`, x: c.recall, y: c.precision,
          extra: (j) => (c.thresholds && c.thresholds[j] !== null ? `  threshold ${num(c.thresholds[j])}` : "") })) }, width);
      break;
    case "roc_curve":
      body = curves({ kind: "roc_curve", xLabel: d.x_label || "fpr", yLabel: d.y_label || "tpr", xRange: [0, 1], yRange: [0, 1],
        series: [...(d.classes || []).map((c) => ({ label: `${c.label} (AUC ${num(c.auc)})`, x: c.fpr, y: c.tpr,
          extra: (j) => (c.thresholds && c.thresholds[j] !== null ? `  threshold ${num(c.thresholds[j])}` : "") })),
        { x: [0, 1], y: [0, 1], color: "#aaa", dash: [4, 4], width: 1, hidden: true }] }, width);
      break;
    case "line": {
      const groups = new Map();
      (d.x || []).forEach((x, i) => {
        const k = d.stroke ? String(d.stroke[i]) : "";
        if (!groups.has(k)) groups.set(k, { x: [], y: [] });
        groups.get(k).x.push(x); groups.get(k).y.push(d.y[i]);
      });
      body = curves({ kind: "line", xLabel: d.x_label, yLabel: d.y_label,
        series: [...groups].map(([k, s]) => ({ label: d.stroke ? k : undefined, x: s.x, y: s.y })) }, width);
      break;
    }
    case "scatter":
      body = curves({ kind: "scatter", xLabel: d.x_label, yLabel: d.y_label, series: [{ x: d.x || [], y: d.y || [], mode: "points" }] }, width);
      break;
    case "line_series":
      body = curves({ kind: "line_series", xLabel: d.xname, series: (d.ys || []).map((y, i) => ({ label: (d.keys || [])[i] ?? `line ${i}`, x: d.xs[i] || d.xs[0], y })) }, width);
      break;
    case "bar":
      body = bars(d.labels || [], d.values || [], width, { xLabel: d.label_name, yLabel: d.value_name });
      break;
    case "histogram": {
      const b = binned(d.values || []);
      body = bars(b.labels, b.counts, width, { kind: "histogram", xLabel: d.value_name, yLabel: "count" });
      break;
    }
    case "confusion_matrix":
      body = cells(d.matrix || [], d.labels || [], d.labels || [], width, { kind: "confusion_matrix", xLabel: "predicted", xName: "predicted", yName: "actual" });
      break;
    case "heatmap":
      body = cells(d.matrix || [], d.x_labels || [], d.y_labels || [], width, { kind: "heatmap", text: d.show_text !== false, xName: "x", yName: "y" });
      break;
    default:
      body = el("pre", { class: "json", text: JSON.stringify(d, null, 1).slice(0, 4000) });
  }
  return el("div", { class: "mchart", "data-kind": value.kind }, title, body);
}

// plotly: draws scatter/scattergl (lines and/or markers) and bar traces with plain numeric arrays; anything else is
// summarised. plotly.js (3.5 MB) is not vendored: the figure's JSON can be downloaded and opened with plotly.
export function plotly(value, width, name) {
  let fig;
  try { fig = JSON.parse(value.json); } catch (err) { return el("div", { class: "merr", text: `plotly figure: bad JSON (${err.message})` }); }
  const traces = Array.isArray(fig.data) ? fig.data : [];
  const layout = fig.layout || {};
  const title = typeof layout.title === "string" ? layout.title : layout.title && layout.title.text;
  const arr = (a) => (Array.isArray(a) && a.every((v) => v === null || typeof v === "number") ? a : null);
  const simple = traces.filter((t) => ["scatter", "scattergl", undefined].includes(t.type) && arr(t.y) && (t.x === undefined || arr(t.x)));
  const barsOnly = traces.length && traces.every((t) => t.type === "bar" && Array.isArray(t.x) && arr(t.y));
  let drawn = null;
  const axisTitle = (a) => (a && (typeof a.title === "string" ? a.title : a.title && a.title.text)) || undefined;
  if (barsOnly && traces.length === 1) drawn = bars(traces[0].x, traces[0].y, width, { kind: "plotly", xLabel: axisTitle(layout.xaxis), yLabel: axisTitle(layout.yaxis) });
  else if (simple.length && simple.length === traces.length) {
    drawn = curves({ kind: "plotly", xLabel: axisTitle(layout.xaxis), yLabel: axisTitle(layout.yaxis),
      series: simple.map((t, i) => ({ label: t.name ?? `trace ${i}`, x: t.x || t.y.map((_, j) => j), y: t.y,
        mode: (t.mode || "lines").includes("lines") ? "line" : "points", color: t.line && typeof t.line.color === "string" ? t.line.color : undefined })) }, width);
  }
  const summary = el("ul", { class: "psum" }, traces.map((t, i) => el("li", {},
    `${t.type || "scatter"}${t.name ? ` “${t.name}”` : ""}: ${Array.isArray(t.y) ? t.y.length : Array.isArray(t.x) ? t.x.length : Array.isArray(t.z) ? t.z.length : "?"} points`)));
  const blob = new Blob([value.json], { type: "application/json" });
  const link = el("a", { href: URL.createObjectURL(blob), download: `${name || "figure"}.json`, text: "download figure JSON" });
  const note = el("div", { class: "muted small" }, drawn ? "drawn here: scatter/line and bar traces; " : "not drawn here (only simple scatter/line and bar traces are); ",
    link, " — open with plotly: ", el("code", { text: "plotly.io.read_json(path).show()" }));
  return el("div", { class: "mplotly", "data-drawn": drawn ? "1" : "0" }, title ? el("div", { class: "ctitle", text: title }) : null,
    drawn, el("details", { open: drawn ? null : true }, el("summary", { text: `${traces.length} trace(s)` }), summary), note);
}
