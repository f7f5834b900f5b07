// The page's only way to the server: GET /api/... and the group's event stream.

export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function get(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) q.set(k, String(v));
  const url = `/api/${path}` + (q.toString() ? `?${q}` : "");
  return decode(await fetch(url, { headers: { Accept: "application/json" } }));
}

export async function decode(res) {
  const body = await res.json().catch(() => ({ error: `${res.status} ${res.statusText}` }));
  if (!res.ok) throw new ApiError(res.status, body.error || res.statusText);
  return body;
}

// the group detail the page started fetching before its modules loaded (index.html), if it is this one
export function early(project, group) {
  const e = window.rwEarly;
  window.rwEarly = null;
  if (e && e.path === `${encodeURIComponent(project)}/${encodeURIComponent(group)}`) return e.res.then(decode);
  return null;
}

export function groupPath(project, group, tail = "") {
  return `projects/${encodeURIComponent(project)}/groups/${encodeURIComponent(group)}${tail ? "/" + tail : ""}`;
}

export function events(project, group, onUpdate, onEnd) {
  const es = new EventSource(`/api/${groupPath(project, group, "events")}`);
  es.addEventListener("update", (e) => onUpdate(JSON.parse(e.data)));
  es.addEventListener("end", () => { es.close(); onEnd(); });
  return es;
}
