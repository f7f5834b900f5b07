// Router and the two list pages: / (projects) and /p/<project> (its groups). /g/<project>/<group> is group.js.
import { get, ApiError } from "./api.js";
import { el, num, duration, when, states, badge, groupHref, projectHref } from "./fmt.js";
import { GroupPage } from "./group.js";
import { projectPage } from "./project.js";
import { comparePage } from "./compare.js";

window.rw = window.rw || { charts: new Map(), page: null };

const main = document.getElementById("main");
const crumbs = document.getElementById("crumbs");
let refreshTimer = null;

function setCrumbs(...items) {
  crumbs.replaceChildren(...items.flatMap((it, i) => (i ? [el("span", { class: "sep", text: "›" }), it] : [it])));
}

function showError(err, retry) {
  const text = err instanceof ApiError ? `${err.status}: ${err.message}` : String(err);
  main.replaceChildren(el("p", { class: "error", text }));
  if (err instanceof ApiError && err.status === 503 && retry) refreshTimer = setTimeout(retry, 2000);
}

async function projectsPage() {
  setCrumbs(el("span", { text: "projects" }));
  document.title = "rankwise";
  const projects = await get("projects");
  if (!projects.length) {
    main.replaceChildren(el("p", { class: "muted", text: "No groups yet: run a job with rankwise.init() and reload." }));
    refreshTimer = setTimeout(route, 3000);
    return;
  }
  const rows = projects.map((p) =>
    el("tr", {}, el("td", {}, el("a", { href: projectHref(p.name), text: p.name })),
      el("td", { class: "num", text: p.groups }), el("td", { text: when(p.latest) })));
  main.replaceChildren(el("h1", { text: "Projects" }),
    el("table", { class: "grid", id: "projects" },
      el("thead", {}, el("tr", {}, el("th", { text: "project" }), el("th", { text: "groups" }), el("th", { text: "latest group" }))),
      el("tbody", {}, rows)));
}

async function groupsPage(project) {
  setCrumbs(el("a", { href: "/", text: "projects" }), el("span", { text: project }));
  document.title = `${project} · rankwise`;
  const groups = await projectPage(main, project);
  if (groups.some((g) => g.state === "running")) refreshTimer = setTimeout(route, 3000);
}

async function route() {
  clearTimeout(refreshTimer);
  if (window.rw.page) { window.rw.page.close(); window.rw.page = null; }
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === "p" && parts.length === 2) await groupsPage(parts[1]);
    else if (parts[0] === "compare" && parts.length === 1) window.rw.page = await comparePage(main, setCrumbs);
    else if (parts[0] === "g" && parts.length === 3) {
      setCrumbs(el("a", { href: "/", text: "projects" }), el("a", { href: projectHref(parts[1]), text: parts[1] }),
        el("span", { text: parts[2] }));
      document.title = `${parts[2]} · rankwise`;
      window.rw.page = new GroupPage(main, parts[1], parts[2]);
      await window.rw.page.open();
    } else await projectsPage();
  } catch (err) {
    showError(err, route);
  }
}

route();
