// The group page's view state in the URL's query string (docs/ui.md "Page state in the URL"), so that a
// reloaded or shared link shows the same view. Only values that differ from the defaults are written.
// group.js reads the state once when the page opens and writes it (history.replaceState) on every change.
// x axis "auto" (no x= in the URL): each key against its define_metric step_metric, else step; a zoom range
// made there is in the units of the chart it was dragged on (rangeAxis, rx= in the URL when not "step").

export const DEFAULTS = Object.freeze({
  filter: "", axis: "auto", log: false, smooth: 0, ranks: false, range: null, rangeAxis: null, pick: "",
  smetric: "auto", sview: "heatmap",
});

const AXES = /^(auto|step|rel|time|metric:.+)$/;

// "0-3,7" → [0, 1, 2, 3, 7] (sorted, unique); null for text that is not such a list
export function parseRanks(text) {
  const t = String(text ?? "").replace(/\s+/g, "").replace(/[–—]/g, "-");
  if (!t) return [];
  const out = new Set();
  for (const part of t.split(",")) {
    const m = part.match(/^(\d+)(?:-(\d+))?$/);
    if (!m) return null;
    const a = Number(m[1]), b = m[2] === undefined ? a : Number(m[2]);
    if (b < a || b - a > 100000) return null;
    for (let r = a; r <= b; r++) out.add(r);
  }
  return [...out].sort((x, y) => x - y);
}

// [0, 1, 2, 3, 7] → "0-3,7"
export function formatRanks(list) {
  const rs = [...new Set(list.map(Number))].filter(Number.isInteger).sort((a, b) => a - b);
  const parts = [];
  for (let i = 0; i < rs.length; i++) {
    let j = i;
    while (j + 1 < rs.length && rs[j + 1] === rs[j] + 1) j++;
    parts.push(j > i ? `${rs[i]}-${rs[j]}` : `${rs[i]}`);
    i = j;
  }
  return parts.join(",");
}

const finite = (v) => v !== null && v !== "" && Number.isFinite(Number(v));

// the state a query string asks for; unknown or malformed values fall back to the defaults
export function readState(search) {
  const q = new URLSearchParams(search);
  const s = { ...DEFAULTS };
  if (q.has("filter")) s.filter = q.get("filter");
  const axis = q.get("x");
  if (axis && AXES.test(axis)) s.axis = axis;
  s.log = q.get("log") === "1";
  const sm = Number(q.get("smooth"));
  if (finite(q.get("smooth")) && sm >= 0 && sm <= 0.99) s.smooth = sm;
  s.ranks = q.get("lines") === "1";
  if (finite(q.get("start")) && finite(q.get("end")) && Number(q.get("start")) < Number(q.get("end"))) {
    s.range = [Number(q.get("start")), Number(q.get("end"))];
    const rx = q.get("rx");
    s.rangeAxis = s.axis !== "auto" ? s.axis : rx && AXES.test(rx) && rx !== "auto" ? rx : "step";
  }
  const pick = parseRanks(q.get("ranks"));
  if (pick && pick.length) s.pick = formatRanks(pick);
  if (q.get("smetric")) s.smetric = q.get("smetric");
  if (q.get("sview") === "lines") s.sview = "lines";
  return s;
}

// a query string ("?x=rel&log=1", or "") for the state; other parameters of `search` are kept
export function writeState(state, search = "") {
  const q = new URLSearchParams(search);
  for (const k of ["filter", "x", "log", "smooth", "lines", "start", "end", "ranks", "smetric", "sview", "rx", "token"]) q.delete(k);
  if (state.filter) q.set("filter", state.filter);
  if (state.axis !== DEFAULTS.axis) q.set("x", state.axis);
  if (state.log) q.set("log", "1");
  if (state.smooth) q.set("smooth", String(state.smooth));
  if (state.ranks) q.set("lines", "1");
  if (state.range) {
    q.set("start", String(Number(state.range[0].toPrecision(10))));
    q.set("end", String(Number(state.range[1].toPrecision(10))));
    if (state.axis === "auto" && state.rangeAxis && state.rangeAxis !== "step") q.set("rx", state.rangeAxis);
  }
  if (state.pick) q.set("ranks", state.pick);
  if (state.smetric && state.smetric !== DEFAULTS.smetric) q.set("smetric", state.smetric);
  if (state.sview && state.sview !== DEFAULTS.sview) q.set("sview", state.sview);
  const text = q.toString();
  return text ? `?${text}` : "";
}

// the axis a zoom range is in: the page's axis, or with "auto" the axis of the chart it was dragged on
export function rangeAxis(state) {
  return state.axis === "auto" || !state.axis ? state.rangeAxis || "step" : state.axis;
}

// the zoom range when it is in steps (the straggler and histogram panels narrow to it), else null
export function stepRange(state) {
  return state.range && rangeAxis(state) === "step" ? state.range : null;
}

// ---- the compare page's view (/compare?g=…&x=rel&log=1&smooth=0.6&filter=loss); its g= are kept as they are

export const COMPARE_DEFAULTS = Object.freeze({ filter: "", axis: "step", log: false, smooth: 0 });
const COMPARE_AXES = /^(step|rel|time)$/;

export function readCompare(search) {
  const q = new URLSearchParams(search);
  const s = { ...COMPARE_DEFAULTS };
  if (q.has("filter")) s.filter = q.get("filter");
  if (COMPARE_AXES.test(q.get("x") || "")) s.axis = q.get("x");
  s.log = q.get("log") === "1";
  const sm = Number(q.get("smooth"));
  if (finite(q.get("smooth")) && sm >= 0 && sm <= 0.99) s.smooth = sm;
  return s;
}

export function writeCompare(state, search = "") {
  const q = new URLSearchParams(search);
  for (const k of ["filter", "x", "log", "smooth", "token"]) q.delete(k);
  if (state.filter) q.set("filter", state.filter);
  if (state.axis !== COMPARE_DEFAULTS.axis) q.set("x", state.axis);
  if (state.log) q.set("log", "1");
  if (state.smooth) q.set("smooth", String(state.smooth));
  const text = q.toString();
  return text ? `?${text}` : "";
}
