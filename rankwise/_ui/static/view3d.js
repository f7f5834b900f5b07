// A small 3-D viewer on a 2-D canvas for Object3D values: point clouds (f32: xyz, xyz+category, xyz+rgb, with
// lidar scene boxes and vectors), OBJ, STL (binary and ASCII) and glTF/GLB meshes (positions and indices of
// triangle primitives, node transforms applied; buffers embedded in the GLB or as data: URIs). Drag to rotate,
// wheel to zoom. Points are drawn through a depth buffer into pixels; triangles flat-shaded, far to near.
// three.js was not vendored (its module build alone is ~700 kB); every object also has a download link.
import { el } from "./fmt.js";

const MAX_TRIS = 200000;
const CATEGORY = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
  [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]];

export const RENDERED = ["f32", "obj", "stl", "gltf", "glb"];

// ---------------------------------------------------------------- parsers → {points, colors, tris, lines}

function fromF32(buf, value) {
  const a = new Float32Array(buf);
  const [n, c] = value.shape || [a.length / 3, 3];
  const points = new Float32Array(n * 3), colors = new Uint8Array(n * 3);
  let zlo = Infinity, zhi = -Infinity;
  for (let i = 0; i < n; i++) { const z = a[i * c + 2]; if (z < zlo) zlo = z; if (z > zhi) zhi = z; }
  for (let i = 0; i < n; i++) {
    points.set([a[i * c], a[i * c + 1], a[i * c + 2]], i * 3);
    let rgb;
    if (c === 4) rgb = CATEGORY[Math.abs(Math.round(a[i * c + 3])) % CATEGORY.length];
    else if (c === 6) rgb = [a[i * c + 3], a[i * c + 4], a[i * c + 5]].map((v) => Math.max(0, Math.min(255, Math.round(v))));
    else { const t = zhi > zlo ? (a[i * c + 2] - zlo) / (zhi - zlo) : 0.5; rgb = [Math.round(30 + 200 * t), Math.round(90 + 80 * t), Math.round(200 - 150 * t)]; }
    colors.set(rgb, i * 3);
  }
  const lines = [];
  const scene = value.scene || {};
  for (const box of scene.boxes || []) {
    const cs = box.corners || [];
    if (cs.length !== 8) continue;
    // the 12 edges of a box: each corner to its three nearest corners
    for (let i = 0; i < 8; i++) {
      const near = cs.map((q, j) => [j, Math.hypot(q[0] - cs[i][0], q[1] - cs[i][1], q[2] - cs[i][2])]).filter(([j]) => j !== i)
        .sort((x, y) => x[1] - y[1]).slice(0, 3);
      for (const [j] of near) if (j > i) lines.push({ a: cs[i], b: cs[j], color: box.color });
    }
  }
  for (const v of scene.vectors || []) if (v.start && v.end) lines.push({ a: v.start, b: v.end, color: v.color });
  return { points, colors, tris: null, lines };
}

function fromOBJ(text) {
  const v = [], tris = [];
  for (const line of text.split("\n")) {
    const p = line.trim().split(/\s+/);
    if (p[0] === "v") v.push([+p[1], +p[2], +p[3]]);
    else if (p[0] === "f") {
      const idx = p.slice(1).map((t) => { const i = parseInt(t.split("/")[0], 10); return i < 0 ? v.length + i : i - 1; });
      for (let k = 1; k + 1 < idx.length; k++) tris.push(idx[0], idx[k], idx[k + 1]);
    }
  }
  const pos = new Float32Array(v.flat());
  if (!tris.length) return { points: pos, colors: null, tris: null, lines: [] };
  const out = new Float32Array(tris.length * 3);
  tris.forEach((i, k) => { const q = v[i] || [0, 0, 0]; out.set(q, k * 3); });
  return { points: null, colors: null, tris: out, lines: [] };
}

function fromSTL(buf) {
  const dv = new DataView(buf);
  if (buf.byteLength >= 84) {
    const n = dv.getUint32(80, true);
    if (84 + 50 * n === buf.byteLength) {
      const tris = new Float32Array(n * 9);
      for (let i = 0; i < n; i++) for (let k = 0; k < 9; k++) tris[i * 9 + k] = dv.getFloat32(84 + i * 50 + 12 + k * 4, true);
      return { points: null, colors: null, tris, lines: [] };
    }
  }
  const text = new TextDecoder().decode(buf);
  const nums = [...text.matchAll(/vertex\s+(\S+)\s+(\S+)\s+(\S+)/g)].flatMap((m) => [+m[1], +m[2], +m[3]]);
  return { points: null, colors: null, tris: new Float32Array(nums.slice(0, nums.length - (nums.length % 9))), lines: [] };
}

function mat4(node) {
  if (node.matrix) return node.matrix.slice();
  const [x, y, z, w] = node.rotation || [0, 0, 0, 1];
  const [sx, sy, sz] = node.scale || [1, 1, 1];
  const [tx, ty, tz] = node.translation || [0, 0, 0];
  return [ // column-major, as glTF
    (1 - 2 * (y * y + z * z)) * sx, 2 * (x * y + z * w) * sx, 2 * (x * z - y * w) * sx, 0,
    2 * (x * y - z * w) * sy, (1 - 2 * (x * x + z * z)) * sy, 2 * (y * z + x * w) * sy, 0,
    2 * (x * z + y * w) * sz, 2 * (y * z - x * w) * sz, (1 - 2 * (x * x + y * y)) * sz, 0,
    tx, ty, tz, 1];
}

function mul(a, b) {
  const o = new Array(16).fill(0);
  for (let c = 0; c < 4; c++) for (let r = 0; r < 4; r++) for (let k = 0; k < 4; k++) o[c * 4 + r] += a[k * 4 + r] * b[c * 4 + k];
  return o;
}

function fromGLTF(doc, bin) {
  const buffers = (doc.buffers || []).map((b, i) => {
    if (b.uri === undefined) return i === 0 ? bin : null;
    const m = /^data:[^,]*;base64,(.*)$/.exec(b.uri);
    if (!m) return null; // external .bin files are not stored with the object
    const raw = atob(m[1]), out = new Uint8Array(raw.length);
    for (let k = 0; k < raw.length; k++) out[k] = raw.charCodeAt(k);
    return out.buffer;
  });
  const SIZE = { SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4 };
  const TYPE = { 5120: Int8Array, 5121: Uint8Array, 5122: Int16Array, 5123: Uint16Array, 5125: Uint32Array, 5126: Float32Array };
  const read = (ai) => {
    const acc = doc.accessors[ai], view = doc.bufferViews[acc.bufferView], buf = buffers[view.buffer];
    if (!buf) throw new Error("the glTF refers to an external buffer file, which is not stored with it");
    const T = TYPE[acc.componentType], n = SIZE[acc.type], size = T.BYTES_PER_ELEMENT;
    const stride = view.byteStride || n * size, base = (view.byteOffset || 0) + (acc.byteOffset || 0);
    const out = new Float64Array(acc.count * n), dv = new DataView(buf);
    const get = { 5120: "getInt8", 5121: "getUint8", 5122: "getInt16", 5123: "getUint16", 5125: "getUint32", 5126: "getFloat32" }[acc.componentType];
    for (let i = 0; i < acc.count; i++) for (let k = 0; k < n; k++) out[i * n + k] = dv[get](base + i * stride + k * size, true);
    return out;
  };
  const tris = [];
  const visit = (ni, parent) => {
    const node = doc.nodes[ni], m = mul(parent, mat4(node));
    if (node.mesh !== undefined) {
      for (const prim of doc.meshes[node.mesh].primitives || []) {
        if ((prim.mode ?? 4) !== 4 || prim.attributes.POSITION === undefined) continue;
        const pos = read(prim.attributes.POSITION);
        const idx = prim.indices !== undefined ? read(prim.indices) : pos.map((_, i) => i).filter((i) => i < pos.length / 3);
        for (const i of idx) {
          const x = pos[i * 3], y = pos[i * 3 + 1], z = pos[i * 3 + 2];
          tris.push(m[0] * x + m[4] * y + m[8] * z + m[12], m[1] * x + m[5] * y + m[9] * z + m[13], m[2] * x + m[6] * y + m[10] * z + m[14]);
        }
      }
    }
    for (const c of node.children || []) visit(c, m);
  };
  const identity = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
  const scene = (doc.scenes || [])[doc.scene || 0];
  const roots = scene ? scene.nodes || [] : (doc.nodes || []).map((_, i) => i);
  roots.forEach((r) => visit(r, identity));
  if (!tris.length) throw new Error("no triangle meshes in this glTF");
  return { points: null, colors: null, tris: new Float32Array(tris), lines: [] };
}

function fromGLB(buf) {
  const dv = new DataView(buf);
  let off = 12, doc = null, bin = null;
  while (off + 8 <= buf.byteLength) {
    const len = dv.getUint32(off, true), type = dv.getUint32(off + 4, true);
    const chunk = buf.slice(off + 8, off + 8 + len);
    if (type === 0x4e4f534a) doc = JSON.parse(new TextDecoder().decode(chunk));
    else if (type === 0x004e4942) bin = chunk;
    off += 8 + len;
  }
  if (!doc) throw new Error("GLB without a JSON chunk");
  return fromGLTF(doc, bin);
}

export async function loadModel(value) {
  const res = await fetch(value.url);
  if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
  const buf = await res.arrayBuffer();
  switch (value.format) {
    case "f32": return fromF32(buf, value);
    case "obj": return fromOBJ(new TextDecoder().decode(buf));
    case "stl": return fromSTL(buf);
    case "gltf": return fromGLTF(JSON.parse(new TextDecoder().decode(buf)), null);
    case "glb": return fromGLB(buf);
    default: throw new Error(`${value.format} is not drawn here; download it`);
  }
}

// ---------------------------------------------------------------- viewer

export class Viewer {
  constructor(model, width, height = 240) {
    this.m = model;
    this.w = width; this.h = height;
    this.yaw = 0.6; this.pitch = 0.4; this.zoom = 1;
    this.canvas = el("canvas", { class: "view3d", width, height, title: "drag to rotate, wheel to zoom" });
    const all = [model.points, model.tris].filter(Boolean);
    let lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    for (const a of all) for (let i = 0; i + 2 < a.length; i += 3) for (let k = 0; k < 3; k++) {
      const v = a[i + k]; if (Number.isFinite(v)) { if (v < lo[k]) lo[k] = v; if (v > hi[k]) hi[k] = v; }
    }
    if (!Number.isFinite(lo[0])) { lo = [-1, -1, -1]; hi = [1, 1, 1]; }
    this.c = lo.map((v, k) => (v + hi[k]) / 2);
    this.r = Math.max(1e-9, Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]) / 2);
    this.canvas.dataset.points = String(model.points ? model.points.length / 3 : 0);
    this.canvas.dataset.triangles = String(model.tris ? Math.min(MAX_TRIS, model.tris.length / 9) : 0);
    let drag = null;
    this.canvas.addEventListener("mousedown", (e) => { drag = [e.clientX, e.clientY]; e.preventDefault(); });
    window.addEventListener("mouseup", () => { drag = null; });
    this.canvas.addEventListener("mousemove", (e) => {
      if (!drag) return;
      this.yaw += (e.clientX - drag[0]) * 0.01; this.pitch += (e.clientY - drag[1]) * 0.01;
      drag = [e.clientX, e.clientY]; this.schedule();
    });
    this.canvas.addEventListener("wheel", (e) => { e.preventDefault(); this.zoom *= Math.exp(-e.deltaY * 0.001); this.schedule(); }, { passive: false });
    this.draw();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = null; this.draw(); });
  }

  // centred and scaled to the bounding sphere (radius 1), then rotated: view coordinates (z towards the viewer)
  view(x, y, z) {
    x = (x - this.c[0]) / this.r; y = (y - this.c[1]) / this.r; z = (z - this.c[2]) / this.r;
    const cy = Math.cos(this.yaw), sy = Math.sin(this.yaw), cp = Math.cos(this.pitch), sp = Math.sin(this.pitch);
    const x1 = cy * x + sy * z, z1 = -sy * x + cy * z;
    return [x1, cp * y - sp * z1, sp * y + cp * z1];
  }

  // view coordinates seen in perspective from distance 3 → [screen x, screen y, depth]
  screen([x, y, z]) {
    const D = 3, f = (0.45 * Math.min(this.w, this.h) * this.zoom * D) / (D - Math.min(z, D - 0.1));
    return [this.w / 2 + x * f, this.h / 2 - y * f, z];
  }

  project(x, y, z) { return this.screen(this.view(x, y, z)); }

  draw() {
    const ctx = this.canvas.getContext("2d"), { w, h, m } = this;
    ctx.fillStyle = "#0f172a"; ctx.fillRect(0, 0, w, h);
    if (m.tris) {
      const n = Math.min(MAX_TRIS, m.tris.length / 9), t = m.tris;
      const proj = new Float32Array(n * 9), shade = new Float32Array(n), depth = new Float32Array(n), order = new Uint32Array(n);
      for (let i = 0; i < n; i++) {
        const v = [0, 1, 2].map((k) => this.view(t[i * 9 + k * 3], t[i * 9 + k * 3 + 1], t[i * 9 + k * 3 + 2]));
        for (let k = 0; k < 3; k++) proj.set(this.screen(v[k]), i * 9 + k * 3);
        // flat shading: the face normal (in view coordinates) against a light from the viewer
        const u = [0, 1, 2].map((k) => v[1][k] - v[0][k]), w = [0, 1, 2].map((k) => v[2][k] - v[0][k]);
        const nx = u[1] * w[2] - u[2] * w[1], ny = u[2] * w[0] - u[0] * w[2], nz = u[0] * w[1] - u[1] * w[0];
        shade[i] = 0.3 + 0.7 * Math.abs(nz / (Math.hypot(nx, ny, nz) || 1));
        depth[i] = v[0][2] + v[1][2] + v[2][2];
        order[i] = i;
      }
      order.sort((a, b) => depth[a] - depth[b]); // far (low z) first
      for (const i of order) {
        const p = proj.subarray(i * 9, i * 9 + 9), s = shade[i];
        ctx.fillStyle = `rgb(${Math.round(120 * s + 30)},${Math.round(170 * s + 30)},${Math.round(220 * s + 25)})`;
        ctx.strokeStyle = ctx.fillStyle; ctx.lineWidth = 0.6; // hides the anti-aliasing seams between faces
        ctx.beginPath(); ctx.moveTo(p[0], p[1]); ctx.lineTo(p[3], p[4]); ctx.lineTo(p[6], p[7]); ctx.closePath(); ctx.fill(); ctx.stroke();
      }
    }
    if (m.points) {
      const img = ctx.getImageData(0, 0, w, h), px = img.data, zbuf = new Float32Array(w * h).fill(-Infinity);
      const p = m.points, col = m.colors;
      for (let i = 0; i + 2 < p.length; i += 3) {
        const [sx, sy, sz] = this.project(p[i], p[i + 1], p[i + 2]);
        const x0 = Math.round(sx), y0 = Math.round(sy);
        for (let dy = 0; dy < 2; dy++) for (let dx = 0; dx < 2; dx++) {
          const x = x0 + dx, y = y0 + dy;
          if (x < 0 || y < 0 || x >= w || y >= h) continue;
          const o = y * w + x;
          if (sz <= zbuf[o]) continue;
          zbuf[o] = sz;
          px[o * 4] = col ? col[i] : 200; px[o * 4 + 1] = col ? col[i + 1] : 200; px[o * 4 + 2] = col ? col[i + 2] : 200; px[o * 4 + 3] = 255;
        }
      }
      ctx.putImageData(img, 0, 0);
    }
    for (const line of m.lines || []) {
      const a = this.project(...line.a), b = this.project(...line.b);
      ctx.strokeStyle = Array.isArray(line.color) ? `rgb(${line.color.join(",")})` : "#facc15";
      ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
    }
  }
}
