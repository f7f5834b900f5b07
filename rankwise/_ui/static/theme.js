// Dark mode: follows prefers-color-scheme unless the header toggle chose one (remembered in localStorage
// "rw-theme"); the inline script in index.html sets data-theme before the first paint. Charts read their
// axis/grid/text colours from the CSS variables (themeColors) and are rebuilt on "rw-theme" events.
const KEY = "rw-theme";
const media = matchMedia("(prefers-color-scheme: dark)");

export function isDark() {
  const t = document.documentElement.dataset.theme;
  return t ? t === "dark" : media.matches;
}

export function themeColors() {
  const cs = getComputedStyle(document.documentElement);
  const v = (name) => cs.getPropertyValue(name).trim();
  return { fg: v("--fg"), muted: v("--muted"), grid: v("--grid"), bg: v("--bg") };
}

function changed() {
  const button = document.getElementById("theme");
  if (button) button.textContent = isDark() ? "☀ light" : "☾ dark";
  window.dispatchEvent(new Event("rw-theme"));
}

export function setTheme(name) {
  if (name) { document.documentElement.dataset.theme = name; localStorage.setItem(KEY, name); }
  else { delete document.documentElement.dataset.theme; localStorage.removeItem(KEY); }
  changed();
}

const button = document.getElementById("theme");
if (button) button.addEventListener("click", () => setTheme(isDark() ? "light" : "dark"));
media.addEventListener("change", () => { if (!document.documentElement.dataset.theme) changed(); });
changed();
