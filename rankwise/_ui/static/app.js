// Router and the two list pages: / (projects) and /p/<project> (its groups). /g/<project>/<group> is group.js.
import { get, ApiError } from "./api.js";
import { el, num, duration, when, states, badge, groupHref, projectHref } from "./fmt.js";
import { GroupPage } from "./group.js";
import { showNotFound, projectMissing, groupMissing } from "./notfound.js";

window.rw = window.rw || { charts: new Map(), page: null };

const main = document.getElementById("main");
const crumbs = document.getElementById("crumbs");
let refreshTimer = null;

// list pages refresh while something may change: every POLL_MIN_MS, doubling up to POLL_MAX_MS while
// the answer stays the same, back to POLL_MIN_MS when it changed (docs/ui.md "Errors and transfer")
const POLL_MIN_MS = 3000;
const POLL_MAX_MS = 30000;
window.rw.poll = { path: null, sig: null, delay: POLL_MIN_MS, answers: 0 };

function schedulePoll(live, answer) {
  const sig = JSON.stringify(answer);
  const p = window.rw.poll;
  const same = p.path === location.pathname && p.sig === sig;
  const max = window.rw.pollMaxMs || POLL_MAX_MS; // a test sets it to POLL_MIN_MS: the old fixed 3 s
  Object.assign(p, { path: location.pathname, sig, delay: same ? Math.min(max, p.delay * 2) : POLL_MIN_MS });
  p.answers += 1;
  if (live) refreshTimer = setTimeout(route, p.delay);
}

// the project page's answer: an empty list means the project does not exist; else poll while running
function afterGroups(project, groups) {
  if (!groups.length) return projectMissing(main, project);
  schedulePoll(groups.some((g) => g.state === "running"), groups);
}

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
    schedulePoll(true, projects);
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
  const groups = await get(`projects/${encodeURIComponent(project)}/groups`);
  const head = ["group", "status", "ranks", "nodes", "steps", "started", "duration", "states"];
  const rows = groups.map((g) =>
    el("tr", {},
      el("td", {}, el("a", { href: groupHref(project, g.name), text: g.name })),
      el("td", {}, badge(g.state)),
      el("td", { class: "num", text: `${g.ranks}/${g.world_size}` }),
      el("td", { class: "num", text: g.nodes.length, title: g.nodes.join(", ") }),
      el("td", { class: "num", text: g.steps }),
      el("td", { text: when(g.created) }),
      el("td", { class: "num", text: duration(g.duration) }),
      el("td", { text: states(g.states) })));
  main.replaceChildren(el("h1", { text: project }),
    el("div", { class: "tablewrap" }, el("table", { class: "grid", id: "groups" },
      el("thead", {}, el("tr", {}, head.map((h) => el("th", { text: h })))), el("tbody", {}, rows))));
  await afterGroups(project, groups);
}

async function route() {
  clearTimeout(refreshTimer);
  if (window.rw.page) { window.rw.page.close(); window.rw.page = null; }
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts.length === 0) await projectsPage();
    else if (parts[0] === "p" && parts.length === 2) await groupsPage(parts[1]);
    else if (parts[0] === "g" && parts.length === 2) {
      history.replaceState(null, "", projectHref(parts[1]) + location.search); // a project has no group page
      await route();
    } else if (parts[0] === "g" && parts.length === 3) {
      setCrumbs(el("a", { href: "/", text: "projects" }), el("a", { href: projectHref(parts[1]), text: parts[1] }),
        el("span", { text: parts[2] }));
      document.title = `${parts[2]} · rankwise`;
      window.rw.page = new GroupPage(main, parts[1], parts[2]);
      await window.rw.page.open();
    } else {
      setCrumbs(el("a", { href: "/", text: "projects" }), el("span", { text: "not found" }));
      showNotFound(main, `No page at ${location.pathname}.`);
    }
  } catch (err) {
    const missing = err instanceof ApiError && err.status === 404;
    if (missing && parts[0] === "g" && parts.length === 3) {
      window.rw.page = null; // it failed before it opened anything: nothing to close
      await groupMissing(main, parts[1], parts[2]).catch((e) => showError(e, route));
    } else if (missing && parts[0] === "p" && parts.length === 2) {
      await projectMissing(main, parts[1]).catch((e) => showError(e, route));
    } else showError(err, route);
  }
}

route();
