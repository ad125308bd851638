"""Room size (floor area, m^2) that is not fooled by holes in the scanned floor.

A scanner cannot see the floor under a bed or a wardrobe, so the floor faces of a real scan
have holes there, and summing their areas under-counts the room. The area is the floor as
meshed (the exact sum of its triangle areas) plus what is missing from it on a grid of
`HOLE_CELL` metres:
  - cells under the footprint of an object standing on the floor (its box bottom within
    `STANDING_TOL_M` of the floor level) and inside the floor's minimum-area rectangle, and
  - cells enclosed by floor and footprints (not reachable from outside the floor without
    crossing them): holes with nothing above them, such as a scan gap.
An opening at the edge of the floor with nothing standing in it (an L-shaped room) stays out.
A complete floor gets nothing added, so its area is exact.
"""

from __future__ import annotations

import numpy as np

from data_gen import geometry

HOLE_CELL = 0.05  # m, grid of the hole measurement
STANDING_TOL_M = 0.15  # an object whose box bottom is this close to the floor stands on it


def cover(polys: np.ndarray, lo: np.ndarray, shape: tuple[int, int], cell: float) -> np.ndarray:
  """(ny, nx) bool grid: cell centres lo + (i + 0.5) * cell inside any convex polygon of
  `polys` (p, n, 2), either orientation, boundary included."""
  out = np.zeros(shape, bool)
  if len(polys) == 0:
    return out
  ny, nx = shape
  i0 = np.clip(np.floor((polys.min(1) - lo) / cell - 0.5).astype(np.int64), 0, [nx - 1, ny - 1])
  i1 = np.clip(np.ceil((polys.max(1) - lo) / cell - 0.5).astype(np.int64), 0, [nx - 1, ny - 1])
  span = i1 - i0 + 1  # (p, 2) cells along x and y of each polygon's bounding box
  count = span[:, 0] * span[:, 1]
  owner = np.repeat(np.arange(len(polys)), count)
  k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
  ix = i0[owner, 0] + k % span[owner, 0]
  iy = i0[owner, 1] + k // span[owner, 0]
  px, py = lo[0] + (ix + 0.5) * cell, lo[1] + (iy + 0.5) * cell
  p = polys[owner]
  a, b = p, np.roll(p, -1, axis=1)
  side = (b[..., 0] - a[..., 0]) * (py[:, None] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (px[:, None] - a[..., 0])
  inside = np.all(side >= -1e-9, 1) | np.all(side <= 1e-9, 1)
  out[iy[inside], ix[inside]] = True
  return out


def _outside(free: np.ndarray) -> np.ndarray:
  """Free cells reachable from the grid border through free cells (4-connected)."""
  reach = np.zeros_like(free)
  reach[0, :], reach[-1, :], reach[:, 0], reach[:, -1] = free[0, :], free[-1, :], free[:, 0], free[:, -1]
  while True:
    grown = reach.copy()
    grown[1:] |= reach[:-1]
    grown[:-1] |= reach[1:]
    grown[:, 1:] |= reach[:, :-1]
    grown[:, :-1] |= reach[:, 1:]
    grown &= free
    if np.array_equal(grown, reach):
      return reach
    reach = grown


def missing_floor(tri: np.ndarray, standing: list[geometry.Box], cell: float = HOLE_CELL) -> float:
  """Area (m^2) the floor triangles (t, 3, 3) lack under standing objects and in enclosed
  holes, measured on a grid of `cell` metres (see the module docstring)."""
  xy = tri[:, :, :2]
  lo = xy.reshape(-1, 2).min(0) - cell
  n = np.ceil((xy.reshape(-1, 2).max(0) + cell - lo) / cell).astype(int) + 1
  shape = (int(n[1]), int(n[0]))
  floor = cover(xy, lo, shape, cell)
  level = float(np.median(tri[:, :, 2]))
  feet = [b.footprint() for b in standing if abs(b.z_range()[0] - level) <= STANDING_TOL_M]
  under = cover(np.array(feet).reshape(-1, 4, 2), lo, shape, cell)
  # Footprints count inside the floor's minimum-area rectangle only (not the hull, which
  # cuts off a corner under a wardrobe): an object beyond the room adds nothing.
  under &= cover(geometry.oriented_box(tri.reshape(-1, 3)).footprint()[None], lo, shape, cell)
  covered = floor | under
  holes = ~covered & ~_outside(~covered)
  return float(((under & ~floor) | holes).sum() * cell * cell)


def floor_area(tri: np.ndarray, standing: list[geometry.Box], cell: float | None = None) -> float:
  """Room size (m^2) from floor triangles (t, 3, 3) and the boxes of the room's objects:
  the floor as meshed (`geometry.floor_area`, exact sum, or the union on a `cell` grid for
  doubled surfaces) plus `missing_floor`."""
  return geometry.floor_area(tri[:, :, :2], cell) + missing_floor(tri, standing)
