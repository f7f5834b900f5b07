// Router and the two list pages: / (projects) and /p/<project> (its groups). /g/<project>/<group> is group.js.
import { get, ApiError } from "./api.js";
import { el, num, duration, when, states, badge, groupHref, projectHref } from "./fmt.js";
import { GroupPage } from "./group.js";
import { RankPage } from "./rank.js";
import { projectPage } from "./project.js";
import { comparePage } from "./compare.js";
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
  const groups = await projectPage(main, project);
  await afterGroups(project, groups);
}

// One route at a time, in order: a page still loading when Back is pressed must not draw over the page the
// address now names (two Backs in a row, a refresh timer firing during a navigation).
let routing = Promise.resolve();
function route() {
  routing = routing.then(routeNow, routeNow);
  return routing;
}

async function routeNow() {
  clearTimeout(refreshTimer);
  if (window.rw.page) { window.rw.page.close(); window.rw.page = null; }
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts.length === 0) await projectsPage();
    else if (parts[0] === "p" && parts.length === 2) await groupsPage(parts[1]);
    else if (parts[0] === "compare" && parts.length === 1) window.rw.page = await comparePage(main, setCrumbs);
    else if (parts[0] === "g" && parts.length === 2) {
      history.replaceState(null, "", projectHref(parts[1]) + location.search); // a project has no group page
      await routeNow();
    } else if (parts[0] === "g" && parts.length === 3) {
      setCrumbs(el("a", { href: "/", text: "projects" }), el("a", { href: projectHref(parts[1]), text: parts[1] }),
        el("span", { text: parts[2] }));
      document.title = `${parts[2]} · rankwise`;
      window.rw.page = new GroupPage(main, parts[1], parts[2]);
      await window.rw.page.open();
    } else if (parts[0] === "g" && parts.length === 5 && parts[3] === "rank") {
      setCrumbs(el("a", { href: "/", text: "projects" }), el("a", { href: projectHref(parts[1]), text: parts[1] }),
        el("a", { href: groupHref(parts[1], parts[2]), text: parts[2] }), el("span", { text: `rank ${parts[4]}` }));
      document.title = `rank ${parts[4]} · ${parts[2]} · rankwise`;
      window.rw.page = new RankPage(main, parts[1], parts[2], parts[4]);
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

// History: links inside the app open their page without a reload (history.pushState), and Back/Forward
// route to the address they restore; a group page rewrites its own address (replaceState) as its view changes.
function inApp(a, e) {
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return false;
  if (a.target || a.hasAttribute("download") || a.origin !== location.origin) return false;
  const path = a.pathname;
  if (a.getAttribute("href").startsWith("#") || /^\/(api|static|media)\//.test(path)) return false;
  return path === "/" || /^\/(p|g|compare)(\/|$)/.test(path);
}

function navigate(href) {
  window.rw.ready = null; // the next page sets it when drawn (tests wait on it)
  history.pushState(null, "", href);
  window.rw.url = location.pathname + location.search;
  scrollTo(0, 0);
  route();
}

document.addEventListener("click", (e) => {
  const a = e.target instanceof Element ? e.target.closest("a[href]") : null;
  if (!inApp(a, e)) return;
  e.preventDefault();
  if (a.href !== location.href) navigate(a.pathname + a.search + a.hash);
});
window.addEventListener("popstate", () => {
  const here = location.pathname + location.search;
  if (here === window.rw.url) return; // only the #fragment moved: the page shown is this address already
  window.rw.url = here;
  window.rw.ready = null;
  route();
});
window.rw.navigate = navigate;
window.rw.url = location.pathname + location.search;

route();
