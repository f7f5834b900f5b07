// Which ranks a chart shows and how: the rank picker's syntax ("0-3,7", "slowest 4", "NaN ranks"), the
// categorical colours of highlighted ranks (the rest one quiet colour, so 64 lines do not all compete), the
// legend under a chart (click hides a rank, shift-click isolates it) and the per-rank hover readout.
import { el, num } from "./fmt.js";

// Tableau 10: distinguishable on white and on the dark background
export const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
export const QUIET = "rgba(128,138,150,0.35)";
export const MIN_COLOR = "#2563eb", MAX_COLOR = "#dc2626";
const SHOWN = 4; // hover: this many highest and lowest ranks when more are visible (three rows at most)

// "0-3,7", "slowest 4", "fastest 2", "nan" / "NaN ranks"; terms separated by commas, united. Empty: every
// rank (null). ctx: { slowest: ranks slowest first (straggler panel), nan: Set of ranks with non-finite values }
export function parsePick(text, ctx = {}) {
  const t = String(text || "").trim();
  if (!t) return null;
  const out = new Set();
  for (const raw of t.split(",")) {
    const term = raw.trim().toLowerCase();
    let m;
    if (!term) continue;
    if ((m = term.match(/^(\d+)$/))) out.add(Number(m[1]));
    else if ((m = term.match(/^(\d+)\s*[-–]\s*(\d+)$/))) {
      const [a, b] = [Number(m[1]), Number(m[2])];
      if (b < a || b - a > 100000) throw new Error(`ranks: "${raw.trim()}" is not a range low-high`);
      for (let r = a; r <= b; r++) out.add(r);
    } else if ((m = term.match(/^(slowest|fastest)\s+(\d+)$/))) {
      const order = ctx.slowest || [];
      if (!order.length) throw new Error(`ranks: "${raw.trim()}" needs the straggler panel's data (not loaded yet)`);
      const list = m[1] === "slowest" ? order : [...order].reverse();
      list.slice(0, Number(m[2])).forEach((r) => out.add(r));
    } else if (/^nan( ranks?)?$/.test(term)) (ctx.nan || new Set()).forEach((r) => out.add(r));
    else throw new Error(`ranks: cannot read "${raw.trim()}"; write e.g. 0-3,7 or slowest 4 or NaN ranks`);
  }
  return out;
}

// colour of each rank line: picked ranks get the palette in rank order; with no pick, the rank lowest most
// often and the one highest most often keep the min/max colours; every other rank the quiet colour
export function rankColors(ranks, pick, minMode, maxMode) {
  const colors = new Map();
  const hl = pick ? ranks.filter((r) => pick.has(r)) : [];
  ranks.forEach((r) => {
    const i = hl.indexOf(r);
    colors.set(r, i >= 0 ? PALETTE[i % PALETTE.length] : !pick && r === minMode ? MIN_COLOR : !pick && r === maxMode ? MAX_COLOR : QUIET);
  });
  return colors;
}

// legend chips under a chart; onToggle(rank, isolate) decides what happens
export function legend(ranks, colors, visible, onToggle) {
  return ranks.map((r) => el("button", {
    type: "button", class: `chip${visible(r) ? "" : " off"}`, "data-rank": r,
    title: "click: hide/show · shift-click: show this rank only (again: all)",
    onclick: (e) => onToggle(r, e.shiftKey),
  }, el("span", { class: "swatch", style: `background:${colors.get(r)}` }), String(r)));
}

// the value of every visible rank at one x, highest first, the min and max rank marked; at many ranks the
// highest and lowest few with "…" between (the full list scrolls in the title)
export function rankReadout(entries) {
  const fin = entries.filter((e) => e.value !== null && Number.isFinite(e.value)).sort((a, b) => b.value - a.value);
  if (!fin.length) return null;
  const hi = fin[0].rank, lo = fin[fin.length - 1].rank;
  const chip = (e) => el("span", { class: `rv${e.rank === hi ? " max" : ""}${e.rank === lo ? " min" : ""}`,
    "data-rank": e.rank, "data-value": String(e.value) },
  el("span", { class: "swatch", style: `background:${e.color}` }),
  `r${e.rank} ${num(e.value)}${e.rank === hi ? " ▲max" : ""}${e.rank === lo && lo !== hi ? " ▼min" : ""}`);
  const shown = fin.length <= 2 * SHOWN + 1 ? fin.map(chip)
    : [...fin.slice(0, SHOWN).map(chip), el("span", { class: "rv more", text: `… ${fin.length - 2 * SHOWN} more …` }),
      ...fin.slice(-SHOWN).map(chip)];
  return el("div", { class: "rankvals", title: fin.map((e) => `rank ${e.rank}: ${e.value}`).join("\n") }, shown);
}
