"""Per-frame instance masks: which object each pixel of a frame shows.

Two sources, one result: ScanNet's per-frame instance images (`instance-filt/N.png`, pixel =
aggregation objectId + 1, 0 = nothing annotated; procedural scenes write them too), or, where
a scene has none (ScanNet without the 2D zips, ScanNet++, ARKitScenes), the scene mesh
rasterised with a z-buffer (data_gen.render) at up to MASK_MAX_WIDTH pixels wide, so that
nearer surfaces hide farther ones, unannotated surfaces and walls included.

From a mask come, per object, the visible pixels (in colour-frame pixels) and the pixel box:
the extent of its visible pixels in the colour frame, inclusive (x1, y1, x2, y2).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from data_gen import render

MASK_MAX_WIDTH = 640  # rasterised masks: at most this wide (ScanNet's 1296 px -> 640)


def rasterized_mask(tris: np.ndarray, tri_owner: np.ndarray, pose: np.ndarray, k_color: np.ndarray,
                    color_size: tuple[int, int]) -> np.ndarray:
  """Object index per pixel (h, w) int (-1: none or background) of triangles (t, 3, 3) whose
  owner (t,) is an object index or -1 (walls, unannotated), seen from `pose` with the colour
  intrinsics (3, 3) scaled to the mask size. Both faces of a triangle are drawn: scan meshes
  are not reliably oriented."""
  cw, ch = color_size
  s = min(1.0, MASK_MAX_WIDTH / cw)
  mw, mh = max(1, int(round(cw * s))), max(1, int(round(ch * s)))
  k = k_color.copy()
  k[0] *= mw / cw
  k[1] *= mh / ch
  mesh = render.Mesh(tris, np.zeros((len(tris), 3)), np.zeros(len(tris), np.int64))
  _, tri = render.rasterize(mesh, pose, k, mw, mh, cull=False)
  return np.where(tri >= 0, tri_owner[np.maximum(tri, 0)], -1)


def instance_mask(path: str, index_of_id: dict[int, int], rotation: int = 0) -> np.ndarray:
  """Object index per pixel (h, w) of an instance image (pixel = objectId + 1), turned by
  `rotation` quarter turns; ids of no usable object give -1. Raises OSError/ValueError when
  the image cannot be decoded."""
  with Image.open(path) as im:
    ids = np.asarray(im)
  if ids.ndim != 2:
    raise ValueError(f"instance image must have one channel, has shape {ids.shape}")
  if not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"instance image must hold integers, holds {ids.dtype}")
  ids = np.rot90(ids, rotation)  # uint8/uint16 indices into the lookup table, no copy
  lut = np.full(int(ids.max()) + 1, -1, np.int32)
  for oid, i in index_of_id.items():
    if oid + 1 < len(lut):
      lut[oid + 1] = i
  lut[0] = -1
  return lut[ids]


@functools.lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
  """Row and column (h * w,) of every pixel of an (h, w) image, flattened row-major."""
  return np.repeat(np.arange(h, dtype=np.int32), w), np.tile(np.arange(w, dtype=np.int32), h)


def pixel_stats(mask: np.ndarray, n_objects: int,
                color_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """Visible pixels (O,) float, in colour-frame pixels (a mask at another size counts by the
  area ratio), and pixel boxes (O, 4) int in the colour frame (-1 where unseen) of a mask
  (h, w) of object indices."""
  h, w = mask.shape
  cw, ch = color_size
  ids = (mask.reshape(-1) + 1).astype(np.int32)  # 0: no object (int32: bincount is faster)
  count = np.bincount(ids, minlength=n_objects + 1)[1:n_objects + 1].astype(np.float64)
  count *= (cw * ch) / (w * h)
  # Rows and columns each object occupies, as (O, h) and (O, w) tables (one bincount each,
  # far cheaper than scatter-min/max or divisions over every pixel); its extremes are the
  # first and last of each.
  row_of, col_of = _pixel_grid(h, w)
  rows = np.bincount(ids * h + row_of, minlength=(n_objects + 1) * h)[h:(n_objects + 1) * h]
  cols = np.bincount(ids * w + col_of, minlength=(n_objects + 1) * w)[w:(n_objects + 1) * w]
  rows, cols = rows.reshape(n_objects, h) > 0, cols.reshape(n_objects, w) > 0
  lo_y, hi_y = rows.argmax(1), h - 1 - rows[:, ::-1].argmax(1)
  lo_x, hi_x = cols.argmax(1), w - 1 - cols[:, ::-1].argmax(1)
  box = np.full((n_objects, 4), -1, np.int64)
  hi_x = np.where(cols.any(1), hi_x, -1)
  seen = hi_x >= 0
  sx, sy = cw / w, ch / h
  # Mask pixel i covers colour pixels [i * sx, (i + 1) * sx).
  x1 = np.floor(lo_x * sx + 1e-9).astype(np.int64)
  y1 = np.floor(lo_y * sy + 1e-9).astype(np.int64)
  x2 = np.minimum(np.ceil((hi_x + 1) * sx - 1e-9).astype(np.int64) - 1, cw - 1)
  y2 = np.minimum(np.ceil((hi_y + 1) * sy - 1e-9).astype(np.int64) - 1, ch - 1)
  box[seen] = np.stack([x1, y1, x2, y2], 1)[seen]
  return count, box
