// Media panels of the group page: one per key whose values are media (images, video, audio, tables, charts from
// rankwise.plot, plotly figures, HTML, 3-D objects). A step slider and a rank choice; with "all ranks" every rank's
// own value side by side (media are never merged across ranks). Values whose bytes were not stored (skipped, e.g.
// over the byte budget) or that failed to encode (error) are shown as such. With "all ranks", only the ranks that
// have a value are tiles (a figure logged by rank 0 alone is one full-width tile); a click on an image opens
// it enlarged (the lightbox; Escape or a click closes it).
import { get, groupPath } from "./api.js";
import { el, num } from "./fmt.js";
import { chart, plotly } from "./plots.js";
import { loadModel, Viewer, RENDERED } from "./view3d.js";

const SIDE_BY_SIDE = new Set(["image", "video", "audio", "chart", "list"]); // default: all ranks at once
const TABLE_ROWS = 50;
const MASK_COLORS = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]];

export function bytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

// ---------------------------------------------------------------- one value → DOM

function notStored(v) {
  if (v.skipped) {
    return el("div", { class: "mskip", "data-skipped": v.skipped },
      `skipped (${v.skipped}): ${v._type}${v.format ? " " + v.format : ""}${v.size ? ", " + bytes(v.size) : ""} not stored`);
  }
  if (v.error) return el("div", { class: "merr", "data-error": "1" }, `error: ${v._type} could not be encoded: ${v.error}`);
  return null;
}

function caption(v, node) {
  return v.caption ? el("figure", { class: "mfig" }, node, el("figcaption", { text: v.caption })) : node;
}

function drawBox(ctx, b, w, h, labels) {
  const p = b.position || {};
  const px = b.domain === "pixel";
  let x0, x1, y0, y1;
  if (p.middle) { x0 = p.middle[0] - p.width / 2; x1 = p.middle[0] + p.width / 2; y0 = p.middle[1] - p.height / 2; y1 = p.middle[1] + p.height / 2; }
  else { x0 = p.minX; x1 = p.maxX; y0 = p.minY; y1 = p.maxY; }
  if (![x0, x1, y0, y1].every(Number.isFinite)) return;
  if (!px) { x0 *= w; x1 *= w; y0 *= h; y1 *= h; }
  const c = MASK_COLORS[Math.abs(b.class_id | 0) % MASK_COLORS.length];
  ctx.strokeStyle = `rgb(${c})`; ctx.lineWidth = Math.max(1, w / 200);
  ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  const text = b.box_caption || (labels && labels[String(b.class_id)]) || "";
  if (text) { ctx.fillStyle = `rgb(${c})`; ctx.font = `${Math.max(8, Math.round(w / 30))}px sans-serif`; ctx.fillText(text, x0 + 2, Math.max(10, y0 - 2)); }
}

// masks (8-bit class ids) tinted per class, then boxes, on a canvas over the image
function overlay(img, v, wrap) {
  const boxes = v.boxes || {}, masks = v.masks || {};
  if (!Object.keys(boxes).length && !Object.keys(masks).length) return;
  const draw = async () => {
    const w = img.naturalWidth, h = img.naturalHeight;
    const cv = el("canvas", { class: "moverlay", width: w, height: h });
    const ctx = cv.getContext("2d");
    for (const m of Object.values(masks)) {
      if (!m || !m.url) continue;
      const mi = new Image();
      mi.src = m.url;
      try { await mi.decode(); } catch { continue; }
      const tmp = document.createElement("canvas"); tmp.width = w; tmp.height = h;
      const tc = tmp.getContext("2d"); tc.drawImage(mi, 0, 0, w, h);
      const d = tc.getImageData(0, 0, w, h);
      for (let i = 0; i < d.data.length; i += 4) {
        const id = d.data[i];
        if (!id) { d.data[i + 3] = 0; continue; }
        const c = MASK_COLORS[id % MASK_COLORS.length];
        d.data[i] = c[0]; d.data[i + 1] = c[1]; d.data[i + 2] = c[2]; d.data[i + 3] = 110;
      }
      tc.putImageData(d, 0, 0);
      ctx.drawImage(tmp, 0, 0);
    }
    for (const group of Object.values(boxes)) for (const b of (group && group.box_data) || []) drawBox(ctx, b, w, h, group.class_labels);
    wrap.append(cv);
  };
  if (img.complete && img.naturalWidth) draw(); else img.addEventListener("load", draw, { once: true });
}

function image(v) {
  const img = el("img", { class: "mimg", src: v.url, alt: v.caption || "", loading: "lazy", "data-sha": v.sha256,
    width: v.width && v.width < 96 ? 96 : null });
  const wrap = el("div", { class: "imgwrap" }, img);
  overlay(img, v, wrap);
  return caption(v, wrap);
}

function object3d(v, ctx) {
  const name = `${ctx.name || "object"}.${v.format === "f32" ? "f32" : v.format}`;
  const link = el("a", { href: v.url, download: name, text: `download ${v.format === "f32" ? "points (float32)" : v.format}` });
  const info = v.format === "f32" ? `${(v.shape || [])[0]} points (${v.layout})` : `${v.format}, ${bytes(v.size)}`;
  const box = el("div", { class: "m3d" }, el("div", { class: "muted small", text: "loading…" }));
  if (RENDERED.includes(v.format)) {
    loadModel(v).then((model) => {
      const viewer = new Viewer(model, Math.max(200, Math.min(ctx.width, 520)), 240);
      box.replaceChildren(viewer.canvas);
    }).catch((err) => box.replaceChildren(el("div", { class: "muted small", text: `not drawn: ${err.message}` })));
  } else box.replaceChildren(el("div", { class: "muted small", text: `${v.format} is not drawn here` }));
  return caption(v, el("div", {}, box, el("div", { class: "small" }, `${info} · `, link)));
}

function cell(v) {
  if (v === null || v === undefined) return el("td", { class: "muted", text: "–" });
  if (typeof v === "number") return el("td", { class: "num", text: num(v) });
  if (typeof v === "string") return el("td", { text: v.length > 300 ? v.slice(0, 300) + "…" : v, title: v.length > 300 ? v : null });
  if (typeof v === "boolean") return el("td", { text: String(v) });
  if (typeof v === "object" && v._type) {
    const bad = notStored(v);
    if (bad) return el("td", {}, bad);
    if (v._type === "image") return el("td", {}, el("img", { class: "mthumb", src: v.url, alt: v.caption || "", loading: "lazy" }));
    if (v._type === "audio") return el("td", {}, el("audio", { controls: true, preload: "none", src: v.url }));
    if (v._type === "video" && v.format === "gif") return el("td", {}, el("img", { class: "mthumb", src: v.url, loading: "lazy" }));
    if (v._type === "histogram") return el("td", { text: `histogram (${(v.values || []).length} bins)` });
    if (v._type === "chart") return el("td", { text: `chart: ${v.kind}` });
    return el("td", {}, v.url ? el("a", { href: v.url, target: "_blank", text: `${v._type} (${v.format})` }) : `${v._type}`);
  }
  const s = JSON.stringify(v);
  return el("td", { text: s.length > 300 ? s.slice(0, 300) + "…" : s });
}

function table(v) {
  const cols = v.columns || [], rows = v.data || [];
  const body = el("tbody");
  const add = (from, to) => { for (const r of rows.slice(from, to)) body.append(el("tr", {}, cols.map((_, j) => cell(r[j])))); };
  add(0, TABLE_ROWS);
  const more = rows.length > TABLE_ROWS
    ? el("button", { type: "button", text: `show all ${rows.length} rows`, onclick: (e) => { add(TABLE_ROWS, rows.length); e.target.remove(); } })
    : null;
  return el("div", { class: "mtable" },
    el("div", { class: "tablewrap" }, el("table", { class: "grid", "data-rows": rows.length, "data-columns": cols.length },
      el("thead", {}, el("tr", {}, cols.map((c) => el("th", { text: c })))), body)),
    el("div", { class: "muted small" }, `${rows.length} row(s) × ${cols.length} column(s) `, more));
}

export function renderValue(v, ctx = {}) {
  if (v === null || v === undefined) return el("div", { class: "muted small", text: "no value at or before this step" });
  if (Array.isArray(v)) {
    return el("div", { class: "mlist" }, v.map((x, i) => renderValue(x, { ...ctx, name: `${ctx.name || "item"}-${i}`, width: Math.max(120, ctx.width / Math.min(v.length, 4) - 8) })));
  }
  if (typeof v !== "object" || !v._type) return el("pre", { class: "json", text: JSON.stringify(v) });
  const bad = notStored(v);
  if (bad) return bad;
  switch (v._type) {
    case "image": return image(v);
    case "video":
      if (v.format === "gif") return caption(v, el("img", { class: "mimg", src: v.url, alt: v.caption || "", loading: "lazy", width: v.width && v.width < 96 ? 96 : null }));
      return caption(v, el("video", { class: "mvideo", controls: true, preload: "metadata", src: v.url }));
    case "audio":
      return caption(v, el("div", {}, el("audio", { controls: true, preload: "metadata", src: v.url }),
        el("div", { class: "muted small", text: [v.sample_rate && `${v.sample_rate} Hz`, v.channels && `${v.channels} ch`, v.duration && `${num(v.duration)} s`, v.format].filter(Boolean).join(" · ") })));
    case "html":
      return el("div", {}, el("iframe", { class: "mhtml", sandbox: "allow-scripts", src: v.url, loading: "lazy", title: "logged HTML (sandboxed)" }),
        el("div", { class: "small" }, el("a", { href: v.url, target: "_blank", rel: "noopener", text: "open (sandboxed)" })));
    case "table": return table(v);
    case "chart": return chart(v, ctx.width || 400);
    case "plotly": return plotly(v, ctx.width || 400, ctx.name);
    case "object3d": return object3d(v, ctx);
    case "histogram": return chart({ kind: "bar", data: { labels: (v.bins || []).slice(0, -1).map((b) => num(b)), values: v.values || [] } }, ctx.width || 400);
    default: return el("pre", { class: "json", text: JSON.stringify(v).slice(0, 2000) });
  }
}

// ---------------------------------------------------------------- one-rank panels, lightbox

// with "all ranks": the ranks that have a value (all of them when none has), and how many were left out
function withValues(ranks, all) {
  if (!all) return { shown: ranks, absent: 0 };
  const shown = ranks.filter((r) => r.value !== null && r.value !== undefined);
  return shown.length ? { shown, absent: ranks.length - shown.length } : { shown: ranks, absent: 0 };
}

// the image enlarged over the page, up to the window's size; Escape or a click closes it
export function lightbox(img) {
  const close = () => { box.remove(); removeEventListener("keydown", onKey); };
  const onKey = (e) => { if (e.key === "Escape") close(); };
  const fig = img.closest("figure");
  const cap = fig ? fig.querySelector("figcaption") : null;
  const box = el("div", { class: "lightbox", id: "lightbox", role: "dialog", "aria-label": "enlarged image", onclick: close },
    el("img", { src: img.currentSrc || img.src, alt: img.alt }),
    cap ? el("div", { class: "lbcap", text: cap.textContent }) : null);
  addEventListener("keydown", onKey);
  document.body.append(box);
  return box;
}

// ---------------------------------------------------------------- the panel

export class MediaPanel {
  constructor(page, info) {
    this.page = page;
    this.key = info.key;
    this.info = info;
    this.seq = 0;
    this.stale = true;
    this.visible = false;
    this.data = null;
    this.steps = [];
    this.step = null; // null: follow the latest step
    this.meta = el("span", { class: "meta" });
    this.slider = el("input", { type: "range", class: "mstep", min: 0, max: 0, value: 0, oninput: () => this.onSlide() });
    this.stepText = el("span", { class: "mstepval" });
    const nudge = (d) => () => { const i = this.index() + d; if (i >= 0 && i < this.steps.length) { this.slider.value = i; this.onSlide(); } };
    this.rank = el("select", { class: "mrank", onchange: () => this.load() });
    this.ranksFilled = 0;
    this.body = el("div", { class: "mtiles" });
    this.card = el("section", { class: "card mcard", "data-key": info.key, "data-type": info.type, "data-state": "new" },
      el("h3", {}, el("span", { text: info.key }), el("span", { class: "mtype", text: info.type }), this.meta),
      el("div", { class: "mcontrols" },
        el("button", { type: "button", class: "mprev", text: "◀", title: "previous step", onclick: nudge(-1) }), this.slider,
        el("button", { type: "button", class: "mnext", text: "▶", title: "next step", onclick: nudge(1) }), this.stepText,
        el("label", {}, "rank ", this.rank)),
      this.body);
    this.card.rwPanel = this;
    this.body.addEventListener("click", (e) => {
      const img = e.target instanceof Element ? e.target.closest("img.mimg") : null;
      if (img) lightbox(img);
    });
    this.fillRanks();
  }

  fillRanks() {
    const runs = (this.page.detail && this.page.detail.runs) || [];
    if (runs.length === this.ranksFilled && this.rank.options.length) return;
    const keep = this.rank.value;
    const opts = [el("option", { value: "all", text: "all ranks" }), ...runs.map((r) => el("option", { value: String(r.rank), text: `rank ${r.rank}` }))];
    this.rank.replaceChildren(...opts);
    this.ranksFilled = runs.length;
    if (keep) this.rank.value = keep;
    else this.rank.value = SIDE_BY_SIDE.has(this.info.type) || !runs.length ? "all" : String(runs[0].rank);
  }

  index() { return Number(this.slider.value); }

  width() { return Math.max(160, this.body.clientWidth || 400); }

  onSlide() {
    const i = this.index();
    this.step = i === this.steps.length - 1 ? null : this.steps[i];
    this.stepText.textContent = `step ${this.steps[i] ?? "–"}`;
    clearTimeout(this.slideTimer);
    this.slideTimer = setTimeout(() => this.load(false), 60);
  }

  // withSteps: also ask for the list of steps (first load, live refresh); moving the slider does not need it
  async load(withSteps = true) {
    const seq = ++this.seq;
    this.stale = false;
    this.fillRanks();
    const params = { key: this.key, steps: withSteps ? 1 : 0 };
    if (this.step !== null) params.step = this.step;
    if (this.rank.value !== "all") params.rank = this.rank.value;
    this.card.dataset.state = "loading";
    let data;
    try {
      data = await get(groupPath(this.page.project, this.page.group, "media"), params);
    } catch (err) {
      if (seq === this.seq) { this.body.replaceChildren(el("div", { class: "merr", text: `error: ${err.message}` })); this.card.dataset.state = "error"; }
      return;
    }
    if (seq !== this.seq) return;
    if (data.steps) {
      this.steps = data.steps;
      this.slider.max = String(Math.max(0, this.steps.length - 1));
      const at = this.step === null ? this.steps.length - 1 : Math.max(0, this.steps.findLastIndex((s) => s <= this.step));
      this.slider.value = String(at);
    }
    this.data = data;
    this.render();
  }

  render(force = false) {
    const d = this.data;
    if (!d) return;
    this.stepText.textContent = `step ${d.step}`;
    this.meta.textContent = `${d.count} step(s) ${d.first}–${d.last}`;
    // a live refresh that brings the same values keeps the tiles (a playing video or audio goes on)
    const sig = JSON.stringify([d.ranks, this.rank.value, this.width()]);
    if (!force && sig === this.sig) { this.card.dataset.state = "ready"; this.card.dataset.step = String(d.step); return; }
    this.sig = sig;
    const { shown, absent } = withValues(d.ranks, this.rank.value === "all");
    const all = this.rank.value === "all" && shown.length > 1;
    const tileWidth = all ? Math.max(160, Math.min(this.width(), this.width() / Math.min(shown.length, 4) - 10)) : this.width();
    const tiles = shown.map((r) => {
      const off = r.step !== null && r.step !== d.step ? ` (its latest: step ${r.step})` : "";
      return el("div", { class: "mtile", "data-rank": r.rank, "data-step": r.step ?? "", style: `width:${all ? tileWidth + "px" : "100%"}` },
        el("div", { class: "mtilehead", text: `rank ${r.rank}${off}` }),
        renderValue(r.value, { width: tileWidth - 8, name: `${this.key}-rank${r.rank}-step${r.step}` }));
    });
    if (absent) {
      tiles.push(el("div", { class: "muted small mabsent", text: `${absent} other rank${absent === 1 ? "" : "s"}: no value at or before this step` }));
    }
    this.body.replaceChildren(...tiles);
    this.card.dataset.tiles = String(shown.length);
    this.card.dataset.state = "ready";
    this.card.dataset.step = String(d.step);
    window.rw.mediaRenders = (window.rw.mediaRenders || 0) + 1;
  }

  resize() {
    const w = this.width();
    if (this.data && Math.abs(w - (this.lastWidth || w)) > 40) this.render(true);
    this.lastWidth = w;
  }

  destroy() { this.seq += 1; clearTimeout(this.slideTimer); }
}
