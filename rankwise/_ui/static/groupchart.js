// The group page's chart: a KeyChart (chart.js) whose x axis follows the page's "default (per key)" choice
// (state.axis "auto", no x= in the URL): a key defined with define_metric(k, step_metric=M) is drawn against
// metric:M (the group detail's keys[].step_metric), any other key against step. An explicit choice in the x
// selector applies to every chart. A zoom range dragged in "auto" mode is in the units of the chart it was
// dragged on (state.rangeAxis); charts on another axis stay unzoomed.
import { KeyChart } from "./chart.js";
import { rangeAxis } from "./viewstate.js";

// the x axis a key is drawn against under the page state `state` and the key's detail entry `info`
export function axisFor(state, info) {
  if (state.axis && state.axis !== "auto") return state.axis;
  return info && info.step_metric ? `metric:${info.step_metric}` : "step";
}

export class GroupChart extends KeyChart {
  axis() { return axisFor(this.page.state, this.info); }

  // KeyChart.load builds its request from page.state before its first await: for that synchronous part the
  // state holds this chart's own axis (and no range when the range is in another axis' units), then it is
  // restored. JavaScript runs this without interleaving, so no other chart sees the substituted values.
  load() {
    const s = this.page.state;
    const saved = { axis: s.axis, range: s.range };
    const axis = this.axis();
    if (s.range && rangeAxis(s) !== axis) s.range = null;
    s.axis = axis;
    try {
      return super.load();
    } finally {
      s.axis = saved.axis;
      s.range = saved.range;
    }
  }

  // a drag-zoom on this chart: the page records which axis the range is in before KeyChart's hook sets it
  options(d, ranks) {
    const o = super.options(d, ranks);
    o.hooks.setSelect = [() => { this.page.zoomAxis = this.axis(); }, ...o.hooks.setSelect];
    return o;
  }
}
