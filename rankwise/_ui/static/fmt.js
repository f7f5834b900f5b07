// Formatting and DOM helpers shared by the pages. Text always goes in through textContent: names come
// from training scripts and are never parsed as HTML.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function num(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(3);
  return String(Number(v.toPrecision(5)));
}

export function duration(s) {
  if (s === null || s === undefined || s < 0) return "–";
  if (s < 120) return `${s.toFixed(1)}s`;
  if (s < 7200) return `${(s / 60).toFixed(1)}m`;
  return `${(s / 3600).toFixed(1)}h`;
}

export function when(t) {
  if (!t) return "–";
  const d = new Date(t * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function states(counts) {
  return Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ");
}

export function badge(state) {
  return el("span", { class: `badge ${state}`, text: state });
}

export function groupHref(project, group) {
  return `/g/${encodeURIComponent(project)}/${encodeURIComponent(group)}`;
}

export function projectHref(project) {
  return `/p/${encodeURIComponent(project)}`;
}

// y axis width from its longest label (uPlot passes the formatted labels)
export function axisSize(u, values) {
  const longest = Math.max(4, ...(values || []).map((v) => String(v).length));
  return Math.ceil(longest * 7 + 18);
}
