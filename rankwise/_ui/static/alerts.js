// The group's alerts (GET .../alerts, agent/alerts/alert.py): a banner above the charts (newest first, in the
// colour of its level, a count per kind, collapsed when there are many), a marker on the chart of an alert's
// key at its step (chart.js asks markersFor), and a badge in the runs table row of an alert's rank (group.js
// asks forRank): rank-wide alerts (hang, straggler, crashed) have no key, so the rank's row is where they go.
import { get, groupPath } from "./api.js";
import { el, when } from "./fmt.js";
import { rankHref } from "./rank.js";

const OPEN_MAX = 3; // more alerts than this: the list starts collapsed (the summary line still counts them)
const SEVERITY = { INFO: 0, WARN: 1, ERROR: 2 };

export function kindCounts(kinds) {
  return Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(", ");
}

export class AlertBanner {
  constructor(page) {
    this.page = page;
    this.alerts = [];
    this.kinds = {};
    this.sig = "";
    this.seq = 0;
    this.userOpen = null; // the reader's choice (opened or closed the list) outlives a live refresh
    this.root = el("details", { id: "alerts", class: "alerts", style: "display:none",
      ontoggle: () => { if (this.rendering === 0) this.userOpen = this.root.open; } });
    this.rendering = 0;
  }

  // fetch the alerts; true when they changed (the caller redraws chart markers and the runs table)
  async load() {
    const seq = ++this.seq;
    let d;
    try {
      d = await get(groupPath(this.page.project, this.page.group, "alerts"));
    } catch (err) {
      if (seq === this.seq) {
        this.root.style.display = "";
        this.root.replaceChildren(el("summary", { class: "error", text: `alerts: ${err.message}` }));
      }
      return false;
    }
    if (seq !== this.seq) return false;
    const sig = JSON.stringify(d.alerts);
    if (sig === this.sig) return false;
    this.sig = sig;
    this.alerts = d.alerts;
    this.kinds = d.kinds;
    this.render();
    return true;
  }

  // newest first; alerts raised in the same second keep the reverse of their raise order
  newest() {
    return this.alerts.map((a, i) => [a, i]).sort((p, q) => q[0].time - p[0].time || q[1] - p[1]).map((p) => p[0]);
  }

  render() {
    const n = this.alerts.length;
    this.root.style.display = n ? "" : "none";
    if (!n) { this.root.replaceChildren(); return; }
    const worst = this.alerts.reduce((w, a) => (SEVERITY[a.level] > SEVERITY[w] ? a.level : w), "INFO");
    this.root.className = `alerts ${worst.toLowerCase()}`;
    const items = this.newest().map((a) => el("li", { class: `alert ${String(a.level).toLowerCase()}`, "data-kind": a.kind,
      "data-rank": a.rank ?? null, "data-step": a.step ?? null, title: JSON.stringify(a.details) },
      el("span", { class: "akind", text: a.kind }), " ", el("span", { class: "amsg", text: a.message }),
      a.rank === null || a.rank === undefined ? null
        : el("a", { class: "arank", href: rankHref(this.page.project, this.page.group, a.rank), text: ` rank ${a.rank} ›` }),
      " ", el("span", { class: "muted small", text: when(a.time) }), ...this.longDetails(a)));
    this.rendering += 1;
    this.root.replaceChildren(
      el("summary", { id: "alerts-head" }, el("strong", { text: `${n} alert${n === 1 ? "" : "s"}` }), `: ${kindCounts(this.kinds)}`,
        n > OPEN_MAX ? el("span", { class: "muted small", text: " (click to show or hide)" }) : null),
      el("ul", { id: "alert-list" }, items));
    this.root.open = this.userOpen ?? n <= OPEN_MAX;
    // the toggle event fires asynchronously after an open change: ignore the one this render caused
    setTimeout(() => { this.rendering -= 1; }, 0);
  }

  // multi-line details (a hung rank's Python stack, a crashed rank's traceback) folded under the alert
  longDetails(a) {
    return Object.entries(a.details || {}).filter(([, v]) => typeof v === "string" && v.includes("\n")).map(([k, v]) =>
      el("details", { class: "adetail" }, el("summary", { text: k }), el("pre", { class: "json", text: v })));
  }

  // alerts at a step of a key: drawn on that key's chart
  markersFor(key) {
    return this.alerts.filter((a) => a.key === key && a.step !== null && a.step !== undefined);
  }

  forRank(rank) {
    return this.alerts.filter((a) => a.rank === rank);
  }
}
