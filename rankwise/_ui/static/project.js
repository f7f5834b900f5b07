// The project page /p/<project>: a table of its groups (state, ranks, steps, duration, start, chosen summary
// metrics) that sorts on a header click (numbers numerically), filters on text (name, state, config values),
// and compares the ticked groups (/compare, compare.js). Sort, filter and metrics live in the page's query
// (?sort=&desc=1&q=&metrics=a,b, docs/ui.md "Project page"), so a reload or a shared link keeps them.
import { get } from "./api.js";
import { el, num, duration, when, states, badge, groupHref } from "./fmt.js";

const ticked = new Map(); // project → Set of group names: survives the page's 3-s re-render while running

// the fixed columns: [id, header, value of a row for sorting (numbers sort numerically), cell]
const COLUMNS = [
  ["group", "group", (g) => g.name, (g, project) => el("td", {}, el("a", { href: groupHref(project, g.name), text: g.name }))],
  ["state", "status", (g) => g.state, (g) => el("td", {}, badge(g.state))],
  ["ranks", "ranks", (g) => g.ranks, (g) => el("td", { class: "num", text: `${g.ranks}/${g.world_size}` })],
  ["nodes", "nodes", (g) => g.nodes.length, (g) => el("td", { class: "num", text: g.nodes.length, title: g.nodes.join(", ") })],
  ["steps", "steps", (g) => g.steps, (g) => el("td", { class: "num", text: g.steps })],
  ["started", "started", (g) => g.created, (g) => el("td", { text: when(g.created) })],
  ["duration", "duration", (g) => g.duration, (g) => el("td", { class: "num", text: duration(g.duration) })],
  ["states", "states", (g) => states(g.states), (g) => el("td", { text: states(g.states) })],
];

export function compareHref(project, names) {
  const q = new URLSearchParams();
  for (const n of names) q.append("g", `${project}/${n}`);
  return `/compare?${q}`;
}

// the text a search matches: name, state and every config value ("key=value")
function haystack(g) {
  const c = g.config || { common: {}, varies: [] };
  const cfg = Object.entries(c.common).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
  return [g.name, g.state, ...cfg, ...c.varies].join(" ").toLowerCase();
}

function compareValues(a, b) {
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

// Render the page into main; returns the groups (app.js decides about polling).
export async function projectPage(main, project) {
  const url = new URL(location.href);
  const view = {
    sort: url.searchParams.get("sort") || "",
    desc: url.searchParams.get("desc") === "1",
    q: url.searchParams.get("q") || "",
    metrics: (url.searchParams.get("metrics") || "").split(",").filter(Boolean),
  };
  let data;
  try {
    data = await get(`projects/${encodeURIComponent(project)}/table`, view.metrics.length ? { metrics: view.metrics.join(",") } : {});
  } catch (err) {
    if (err.status !== 400 || !view.metrics.length) throw err;
    // a metric that no group has (an old link): show the table without metrics and say so
    data = await get(`projects/${encodeURIComponent(project)}/table`);
    data.warning = err.message;
    view.metrics = [];
  }
  const chosen = ticked.get(project) || new Set();
  ticked.set(project, chosen);
  for (const n of [...chosen]) if (!data.groups.some((g) => g.name === n)) chosen.delete(n);

  const saveUrl = () => {
    const u = new URL(location.href);
    for (const [k, v] of [["sort", view.sort], ["desc", view.desc ? "1" : ""], ["q", view.q], ["metrics", view.metrics.join(",")]]) {
      if (v) u.searchParams.set(k, v); else u.searchParams.delete(k);
    }
    history.replaceState(history.state, "", u.pathname + u.search);
  };

  const columns = [...COLUMNS, ...view.metrics.map((m) => [`metric:${m}`, m, (g) => g.metrics[m],
    (g) => el("td", { class: "num metric", "data-metric": m, text: num(g.metrics[m]),
      title: g.metrics_missing[m] ? `${g.metrics_missing[m]} rank(s) without a finite value left out of the mean` : "" })])];

  const tbody = el("tbody");
  const count = el("span", { class: "muted", id: "groups-count" });
  const compareBtn = el("button", { id: "compare", type: "button", onclick: () => location.assign(compareHref(project, [...chosen])) });
  const updateButton = () => {
    compareBtn.textContent = `compare ${chosen.size} selected`;
    compareBtn.disabled = chosen.size < 2;
    compareBtn.title = chosen.size < 2 ? "tick two groups or more" : "";
  };
  const heads = columns.map(([id, label]) => el("th", { class: "sortable", "data-col": id, title: "click to sort",
    onclick: () => { view.desc = view.sort === id ? !view.desc : false; view.sort = id; saveUrl(); draw(); } }, label));

  const draw = () => {
    const q = view.q.trim().toLowerCase();
    let rows = data.groups.filter((g) => !q || haystack(g).includes(q));
    const col = columns.find((c) => c[0] === view.sort);
    if (col) {
      const sign = view.desc ? -1 : 1;
      rows = [...rows].sort((a, b) => {
        const va = col[2](a), vb = col[2](b);
        const none = (v) => v === null || v === undefined;
        if (none(va) || none(vb)) return none(va) === none(vb) ? 0 : none(va) ? 1 : -1; // missing last, either way
        return sign * compareValues(va, vb);
      });
    }
    for (const th of heads) {
      th.classList.toggle("asc", th.dataset.col === view.sort && !view.desc);
      th.classList.toggle("desc", th.dataset.col === view.sort && view.desc);
    }
    tbody.replaceChildren(...rows.map((g) => {
      const box = el("input", { type: "checkbox", class: "pick", "aria-label": `select ${g.name}`, "data-group": g.name,
        onchange: (e) => { if (e.target.checked) chosen.add(g.name); else chosen.delete(g.name); updateButton(); } });
      box.checked = chosen.has(g.name);
      const cells = columns.map((c) => c[3](g, project));
      cells[0].prepend(box); // in the name's cell: the columns keep their places (status is the second)
      return el("tr", { "data-group": g.name }, cells);
    }));
    count.textContent = `${rows.length} of ${data.groups.length} groups`;
    updateButton();
  };

  const search = el("input", { type: "search", id: "group-search", value: view.q, placeholder: "search name, state, config",
    oninput: (e) => { view.q = e.target.value; saveUrl(); draw(); } });
  const picker = el("details", { class: "metric-picker", id: "metric-picker" },
    el("summary", { text: `metrics (${view.metrics.length})` }),
    data.summary_keys.length ? data.summary_keys.map((k) => {
      const box = el("input", { type: "checkbox", "data-key": k, onchange: (e) => {
        view.metrics = e.target.checked ? [...view.metrics, k] : view.metrics.filter((m) => m !== k);
        saveUrl();
        projectPage(main, project);
      } });
      box.checked = view.metrics.includes(k);
      return el("label", {}, box, k);
    }) : el("span", { class: "muted", text: "no summary values yet" }));
  picker.title = "each group's value: the mean over its ranks of their summary value (last logged)";
  main.replaceChildren(el("h1", { text: project }),
    el("div", { class: "projbar" }, search, picker, compareBtn, count),
    el("p", { class: "error", id: "project-warning", text: data.warning || "", hidden: !data.warning }),
    el("div", { class: "tablewrap" }, el("table", { class: "grid", id: "groups" },
      el("thead", {}, el("tr", {}, heads)), tbody)));
  draw();
  window.rw.project = { project, view, groups: data.groups };
  window.rw.ready = true;
  return data.groups;
}
