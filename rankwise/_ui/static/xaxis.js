// x-axis labels for the charts (chart.js) and the zoom range text (group.js). The server sends x as steps,
// as seconds since the group's first commit (t0) for "rel" (relative time) and "time" (wall time: the chart
// adds t0 and shows dates), or as a step metric's values ("metric:K").
import { num } from "./fmt.js";

const pad = (n) => String(n).padStart(2, "0");

// seconds → "45s", "1m 30s", "2h 05m", "3d 4h"; fractions only below 10 s (so ticks at 2.5 s stay apart)
export function relTime(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "–";
  const sign = s < 0 ? "-" : "";
  let a = Math.abs(s);
  if (a < 10) return `${sign}${Number(a.toFixed(a < 1 && a > 0 ? 2 : 1))}s`;
  a = Math.round(a);
  if (a < 60) return `${sign}${a}s`;
  if (a < 3600) return `${sign}${Math.floor(a / 60)}m${a % 60 ? ` ${a % 60}s` : ""}`;
  if (a < 86400) return `${sign}${Math.floor(a / 3600)}h ${pad(Math.floor((a % 3600) / 60))}m`;
  return `${sign}${Math.floor(a / 86400)}d ${Math.floor((a % 86400) / 3600)}h`;
}

// wall-clock tick label for epoch seconds: the time of day, with seconds when the visible span is short,
// and the date in front when the span crosses days
export function wallTime(t, span = 0) {
  if (t === null || t === undefined || !Number.isFinite(t)) return "–";
  const d = new Date(t * 1000);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  const ms = d.getMilliseconds();
  const frac = span < 10 && ms ? `.${String(ms).padStart(3, "0").replace(/0+$/, "")}` : ""; // ticks 0.5 s apart
  const clock = span < 600 ? `${hm}:${pad(d.getSeconds())}${frac}` : hm;
  if (span < 86400) return clock;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock}`;
}

// uPlot options of the x axis for data `d` (the server's answer: its `axis`)
export function xAxis(d) {
  if (d.axis === "rel") return { values: (u, vals) => vals.map(relTime) };
  if (d.axis === "time") {
    return { values: (u, vals) => {
      const span = (u.scales.x.max ?? 0) - (u.scales.x.min ?? 0);
      return vals.map((v) => wallTime(v, span));
    } };
  }
  if (d.axis === "step") return { values: (u, vals) => vals.map((v) => (Number.isInteger(v) ? v.toLocaleString() : num(v))) };
  return { values: (u, vals) => vals.map(num) };
}

// one x value as text: readouts and the zoom range (v in the server's units: seconds since t0 on time axes)
export function xText(axis, v, t0 = null) {
  if (axis === "rel") return `+${relTime(v)}`;
  if (axis === "time") return t0 !== null && t0 !== undefined ? wallTime(t0 + v, 0) : `+${relTime(v)}`;
  if (axis === "step") return `step ${Number.isInteger(v) ? v : num(v)}`;
  return `${axis.replace(/^metric:/, "")} ${num(v)}`;
}
