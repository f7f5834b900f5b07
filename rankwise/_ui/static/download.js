// Per-chart downloads: CSV of what the chart holds (x, mean, min, max, the visible rank lines, and the
// smoothed mean when smoothing is on) and PNG of its canvas on the page's background colour.

function save(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

const safe = (s) => String(s).replace(/[^\w.-]+/g, "_");
const cell = (v) => (v === null || v === undefined ? "" : typeof v === "number" ? String(v) : `"${String(v).replace(/"/g, '""')}"`);

// columns: [[header, values], ...] of equal length
export function csvText(columns) {
  const n = columns.length ? columns[0][1].length : 0;
  const lines = [columns.map(([h]) => cell(h)).join(",")];
  for (let i = 0; i < n; i++) lines.push(columns.map(([, v]) => cell(v[i])).join(","));
  return lines.join("\n") + "\n";
}

export function downloadCsv(columns, name) {
  save(new Blob([csvText(columns)], { type: "text/csv" }), `${safe(name)}.csv`);
}

export function downloadPng(canvas, background, name) {
  const out = document.createElement("canvas");
  out.width = canvas.width;
  out.height = canvas.height;
  const ctx = out.getContext("2d");
  ctx.fillStyle = background;
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(canvas, 0, 0);
  out.toBlob((blob) => save(blob, `${safe(name)}.png`), "image/png");
}
