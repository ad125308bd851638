"""A numpy z-buffer rasterizer for triangle soups with flat Lambert shading.

Triangles are culled (back faces, behind the camera), clipped against the near plane, then
rasterised at pixel centres. Large triangles (walls, floor) are drawn one by one on their
bounding-box window; the many small ones are expanded into fragments together and resolved
with one scatter-min, which keeps the Python loop short.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_gen import geometry

_BIG = 6000  # bounding-box pixels above which a triangle is drawn on its own


@dataclasses.dataclass
class Mesh:
  """Triangle soup: vertices (t, 3, 3) world, counter-clockwise seen from outside, and per
  triangle colour (t, 3) in [0, 1], a material tag (t,) int (1 = floor, checkered) and the
  id (t,) int of the object it belongs to (for instance images; -1 = none)."""

  tris: np.ndarray
  colours: np.ndarray
  material: np.ndarray
  instance: np.ndarray | None = None


def _clip_near(pc: np.ndarray, near: float) -> tuple[np.ndarray, np.ndarray]:
  """Clip triangles (t, 3, 3) in camera space against z = near.

  Returns the clipped triangles (t', 3, 3) and for each the index of its source triangle.
  """
  inside = pc[:, :, 2] > near
  n_in = inside.sum(1)
  keep = n_in == 3
  out, src = [pc[keep]], [np.nonzero(keep)[0]]
  for i in np.nonzero((n_in > 0) & (n_in < 3))[0]:
    poly = []
    tri = pc[i]
    for j in range(3):
      a, b = tri[j], tri[(j + 1) % 3]
      ia, ib = a[2] > near, b[2] > near
      if ia:
        poly.append(a)
      if ia != ib:
        t = (near - a[2]) / (b[2] - a[2])
        poly.append(a + t * (b - a))
    for k in range(1, len(poly) - 1):
      out.append(np.stack([poly[0], poly[k], poly[k + 1]])[None])
      src.append(np.array([i]))
  return np.concatenate(out), np.concatenate(src)


def rasterize(mesh: Mesh, pose: np.ndarray, k: np.ndarray, width: int, height: int,
              near: float = 0.05, cull: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Depth (h, w) float32 camera z (inf where empty) and triangle index (h, w) int32 (-1).
  `cull`: drop back faces (triangles must be counter-clockwise seen from outside)."""
  pc = geometry.world_to_camera(pose, mesh.tris.reshape(-1, 3)).reshape(-1, 3, 3)
  if cull:
    # Back-face culling: keep triangles whose normal points towards the camera at the origin.
    n = np.cross(pc[:, 1] - pc[:, 0], pc[:, 2] - pc[:, 0])
    idx = np.nonzero(np.einsum("ij,ij->i", n, pc[:, 0]) < 0)[0]
  else:
    idx = np.nonzero((pc[:, :, 2] > near).any(1))[0]
  pc, src = _clip_near(pc[idx], near)
  src = idx[src]
  fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
  z = pc[:, :, 2]
  u = fx * pc[:, :, 0] / z + cx
  v = fy * pc[:, :, 1] / z + cy
  # Pixel-centre bounding boxes: centres i + 0.5 with i in [x0, x1].
  x0 = np.clip(np.ceil(u.min(1) - 0.5), 0, width).astype(np.int64)
  x1 = np.clip(np.floor(u.max(1) - 0.5), -1, width - 1).astype(np.int64)
  y0 = np.clip(np.ceil(v.min(1) - 0.5), 0, height).astype(np.int64)
  y1 = np.clip(np.floor(v.max(1) - 0.5), -1, height - 1).astype(np.int64)
  ok = (x1 >= x0) & (y1 >= y0)
  u, v, z, src = u[ok], v[ok], z[ok], src[ok]
  x0, x1, y0, y1 = x0[ok], x1[ok], y0[ok], y1[ok]
  # Edge functions e_i(x, y) = A x + B y + C and inverse depth 1/z = P x + Q y + R (affine in
  # screen space for a planar triangle), normalised so that the inside is positive.
  ua, va = u, v
  ub, vb = np.roll(u, -1, 1), np.roll(v, -1, 1)
  ea = vb - va  # coefficient of x  ... e = (x - ua) * (vb - va) - (y - va) * (ub - ua)
  eb = -(ub - ua)
  ec = -(ua * ea + va * eb)
  area = (u[:, 1] - u[:, 0]) * (v[:, 2] - v[:, 0]) - (u[:, 2] - u[:, 0]) * (v[:, 1] - v[:, 0])
  sign = np.where(area >= 0, -1.0, 1.0)[:, None]
  ea, eb, ec = ea * sign, eb * sign, ec * sign
  good = np.abs(area) > 1e-12
  iz = 1.0 / z
  m = np.stack([u, v, np.ones_like(u)], -1)  # (t, 3, 3)
  coef = np.zeros((len(u), 3))
  coef[good] = np.linalg.solve(m[good], iz[good][..., None])[..., 0]
  zbuf = np.full(height * width, np.inf)
  ibuf = np.full(height * width, -1, np.int64)
  area_px = (x1 - x0 + 1) * (y1 - y0 + 1)
  big = good & (area_px > _BIG)
  small = np.nonzero(good & ~big)[0]
  # Small triangles: all fragments at once.
  if len(small):
    w = (x1 - x0 + 1)[small]
    cnt = area_px[small]
    tri = np.repeat(small, cnt)
    start = np.cumsum(cnt) - cnt
    local = np.arange(int(cnt.sum())) - np.repeat(start, cnt)
    px = x0[tri] + local % np.repeat(w, cnt)
    py = y0[tri] + local // np.repeat(w, cnt)
    fx_, fy_ = px + 0.5, py + 0.5
    inside = np.ones(len(tri), bool)
    for e in range(3):
      inside &= ea[tri, e] * fx_ + eb[tri, e] * fy_ + ec[tri, e] >= 0
    tri, px, py, fx_, fy_ = tri[inside], px[inside], py[inside], fx_[inside], fy_[inside]
    inv = coef[tri, 0] * fx_ + coef[tri, 1] * fy_ + coef[tri, 2]
    depth = 1.0 / np.maximum(inv, 1e-9)
    pix = py * width + px
    np.minimum.at(zbuf, pix, depth)
    win = depth <= zbuf[pix]
    ibuf[pix[win]] = tri[win]
  zbuf = zbuf.reshape(height, width)
  ibuf = ibuf.reshape(height, width)
  for t in np.nonzero(big)[0]:
    xs = np.arange(x0[t], x1[t] + 1) + 0.5
    ys = (np.arange(y0[t], y1[t] + 1) + 0.5)[:, None]
    inside = np.ones((len(ys), len(xs)), bool)
    for e in range(3):
      inside &= ea[t, e] * xs + eb[t, e] * ys + ec[t, e] >= 0
    depth = 1.0 / np.maximum(coef[t, 0] * xs + coef[t, 1] * ys + coef[t, 2], 1e-9)
    zw = zbuf[y0[t]:y1[t] + 1, x0[t]:x1[t] + 1]
    iw = ibuf[y0[t]:y1[t] + 1, x0[t]:x1[t] + 1]
    upd = inside & (depth < zw)
    zw[upd] = depth[upd]
    iw[upd] = t
  # Map clipped-triangle ids back to mesh triangles.
  if len(src) == 0:
    return zbuf.astype(np.float32), np.full((height, width), -1, np.int32)
  out = np.where(ibuf >= 0, src[np.maximum(ibuf, 0)], -1)
  return zbuf.astype(np.float32), out.astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Light:
  """Flat Lambert lighting: ambient + sun * max(0, n . sun_dir) + headlight * |n . view|,
  times an RGB tint (3,)."""

  sun_dir: tuple[float, float, float] = tuple(np.array([0.35, 0.55, 1.0]) / np.linalg.norm([0.35, 0.55, 1.0]))
  ambient: float = 0.42
  sun: float = 0.4
  headlight: float = 0.25
  tint: tuple[float, float, float] = (1.0, 1.0, 1.0)


def shade(mesh: Mesh, pose: np.ndarray, k: np.ndarray, depth: np.ndarray, tri: np.ndarray,
          background: tuple[int, int, int] = (20, 20, 24), light: Light = Light()) -> np.ndarray:
  """Colour image (h, w, 3) uint8: Lambert with a sun plus a camera headlight (`light`), a
  checker on floor pixels (0.5 m tiles) so that the floor reads as a plane, and a slight
  darkening with distance as a depth cue."""
  t = mesh.tris
  n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
  n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
  view = pose[:3, 2]  # camera forward in world
  lam = (light.ambient + light.sun * np.clip(n @ np.asarray(light.sun_dir), 0, None)
         + light.headlight * np.abs(n @ view))
  tri_rgb = np.clip(mesh.colours * lam[:, None] * np.asarray(light.tint), 0, 1).astype(np.float32)
  tri_rgb = np.concatenate([tri_rgb, np.asarray(background, np.float32)[None] / 255])
  h, w = tri.shape
  flat = tri.reshape(-1)
  img = tri_rgb[flat]  # background is the last row, index -1
  z = depth.reshape(-1)
  hit = flat >= 0
  factor = np.where(hit, 1.0 / (1.0 + 0.03 * np.where(hit, z, 0.0)), 1.0).astype(np.float32)
  fl = np.nonzero(hit & (mesh.material[np.maximum(flat, 0)] == 1))[0]
  if len(fl):
    ii, jj = fl % w, fl // w
    zf = z[fl].astype(np.float64)
    r = pose[:3, :3]
    cam_x = (ii + 0.5 - k[0, 2]) / k[0, 0] * zf
    cam_y = (jj + 0.5 - k[1, 2]) / k[1, 1] * zf
    wx = r[0, 0] * cam_x + r[0, 1] * cam_y + r[0, 2] * zf + pose[0, 3]
    wy = r[1, 0] * cam_x + r[1, 1] * cam_y + r[1, 2] * zf + pose[1, 3]
    check = (np.floor(wx * 2) + np.floor(wy * 2)) % 2
    factor[fl] *= (0.9 + 0.1 * check).astype(np.float32)
  img *= factor[:, None]
  return (img.reshape(h, w, 3) * 255 + 0.5).astype(np.uint8)


def box_triangles(center: np.ndarray, size: np.ndarray, yaw: float) -> np.ndarray:
  """12 outward-facing triangles (12, 3, 3) of a yaw box."""
  b = geometry.Box(np.asarray(center, float), np.asarray(size, float), yaw)
  c = b.corners()  # 0-3 bottom ccw, 4-7 top ccw (seen from above)
  quads = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]
  tris = []
  for a, b_, c_, d in quads:
    tris.append([c[a], c[b_], c[c_]])
    tris.append([c[a], c[c_], c[d]])
  return np.asarray(tris)
