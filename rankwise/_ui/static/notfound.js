// In-app "not found" (static/app.js `route`): an unknown page, or a project or group the URL names that the
// store does not hold, says what is missing, offers the closest names and links back. Unknown paths the
// server itself does not serve get static/notfound.html instead (rankwise/_ui/handler.py).
import { el, groupHref, projectHref } from "./fmt.js";
import { get } from "./api.js";

// edit distance (insert, delete, substitute: 1 each) between two short names
function distance(a, b) {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

// up to `n` of `names` close to `name` (a third of its length in edits, at least 2), closest first
export function closest(name, names, n = 3) {
  const limit = Math.max(2, Math.floor(name.length / 3));
  return names.map((x) => [distance(name.toLowerCase(), x.toLowerCase()), x])
    .filter(([d]) => d <= limit).sort((a, b) => a[0] - b[0] || a[1].localeCompare(b[1]))
    .slice(0, n).map(([, x]) => x);
}

export function showNotFound(main, text, suggestions = [], back = { href: "/", text: "all projects" }) {
  const body = [el("h1", { text: "Not found" }), el("p", { class: "nf-what", text })];
  if (suggestions.length) {
    body.push(el("p", {}, "Did you mean ",
      suggestions.flatMap(([href, name], i) => [i ? ", " : "", el("a", { href, text: name })]), "?"));
  }
  body.push(el("p", {}, el("a", { href: back.href, class: "nf-back", text: `Back to ${back.text}` })));
  main.replaceChildren(el("div", { id: "notfound", class: "notfound" }, body));
  document.title = "not found · rankwise";
}

// a project missing from the store: "no project named X" with the closest project names
export async function projectMissing(main, project) {
  const names = (await get("projects")).map((p) => p.name);
  showNotFound(main, `No project named "${project}".`, closest(project, names).map((p) => [projectHref(p), p]));
}

// the group page's 404: the project or the group is missing (whichever it is), with the closest names
export async function groupMissing(main, project, group) {
  const projects = (await get("projects")).map((p) => p.name);
  if (!projects.includes(project)) return projectMissing(main, project);
  const names = (await get(`projects/${encodeURIComponent(project)}/groups`)).map((g) => g.name);
  showNotFound(main, `No group named "${group}" in project "${project}".`,
    closest(group, names).map((g) => [groupHref(project, g), g]), { href: projectHref(project), text: project });
}
