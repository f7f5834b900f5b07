// The group page's chart: a KeyChart (chart.js) whose x axis follows the page's "default (per key)" choice
// (state.axis "auto", no x= in the URL): a key defined with define_metric(k, step_metric=M) is drawn against
// metric:M (the group detail's keys[].step_metric), any other key against step. An explicit choice in the x
// selector applies to every chart. A zoom range dragged in "auto" mode is in the units of the chart it was
// dragged on (state.rangeAxis); charts on another axis stay unzoomed.
// Alert markers on every axis: an alert is about a step; on a time or step-metric axis its marker goes at that
// step's x there, which the alerts endpoint computes (alerts?x=A, rankwise/_ui/alertx.py), once per axis in use
// and again when the alerts change.
import { get, groupPath } from "./api.js";
import { KeyChart } from "./chart.js";
import { rangeAxis } from "./viewstate.js";

const alertId = (a) => [a.kind, a.time, a.rank, a.step, a.key].join("|");

// the alerts' x on `axis` (a Map alertId → x), or null while they are fetched (charts on that axis redraw then)
function alertXs(page, axis) {
  const sig = page.alerts ? page.alerts.sig : "";
  page.alertX = page.alertX || new Map();
  const have = page.alertX.get(axis);
  if (have && have.sig === sig) return have.map;
  if (have && have.pending === sig) return have.map;
  const entry = { sig: have ? have.sig : null, map: have ? have.map : null, pending: sig };
  page.alertX.set(axis, entry);
  get(groupPath(page.project, page.group, "alerts"), { x: axis }).then((d) => {
    if (page.closed || entry.pending !== sig) return;
    entry.map = new Map(d.alerts.map((a) => [alertId(a), a.x]));
    entry.sig = sig;
    for (const c of page.charts.values()) if (c.u && c.data && c.data.axis === axis) c.u.redraw(false);
  }).catch(() => {});
  return entry.map;
}

// the x axis a key is drawn against under the page state `state` and the key's detail entry `info`
export function axisFor(state, info) {
  if (state.axis && state.axis !== "auto") return state.axis;
  return info && info.step_metric ? `metric:${info.step_metric}` : "step";
}

export class GroupChart extends KeyChart {
  axis() { return axisFor(this.page.state, this.info); }

  markerX(a) {
    const axis = this.data && this.data.axis;
    if (!axis || axis === "step") return super.markerX(a);
    const xs = alertXs(this.page, axis);
    const x = xs ? xs.get(alertId(a)) : null;
    if (x === null || x === undefined) return null;
    return axis === "time" ? this.data.t0 + x : x; // the time axis draws epoch seconds
  }

  // the request KeyChart.load builds from the page state, on this chart's own axis (without the zoom range when
  // that range is in another axis' units)
  seriesParams(params) {
    const s = this.page.state;
    const axis = this.axis();
    const out = { ...params, x: axis };
    if (s.range && rangeAxis(s) !== axis) { delete out.start; delete out.end; }
    return out;
  }
}
