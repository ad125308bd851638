"""Room size on hand-built floors with holes: the expected areas are rectangle areas."""

import numpy as np
import pytest

from data_gen import geometry, room


def _floor(holes=(), step=0.1, size=(4.0, 3.0)):
  """Floor triangles (t, 3, 3) of a size[0] x size[1] m floor in step-metre squares, without
  the squares whose centre lies in one of the (x0, y0, x1, y1) holes."""
  tris = []
  for x in np.arange(0, size[0] - 1e-9, step):
    for y in np.arange(0, size[1] - 1e-9, step):
      cx, cy = x + step / 2, y + step / 2
      if any(a <= cx <= c and b <= cy <= d for a, b, c, d in holes):
        continue
      p = [(x, y), (x + step, y), (x + step, y + step), (x, y + step)]
      tris += [[p[0], p[1], p[2]], [p[0], p[2], p[3]]]
  t = np.array(tris, float)
  return np.concatenate([t, np.zeros(t.shape[:2] + (1,))], -1)


def _box(x0, y0, x1, y1, z0=0.0, z1=0.8):
  return geometry.Box(np.array([(x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2]),
                      np.array([x1 - x0, y1 - y0, z1 - z0]), 0.0)


BED_HOLE = (1.0, 1.0, 2.0, 1.8)
NOTCH = (3.0, 2.5, 4.0, 3.0)  # against the walls x = 4 and y = 3


def test_complete_floor_is_exact():
  assert room.floor_area(_floor(), [_box(*BED_HOLE), _box(*NOTCH)]) == pytest.approx(12.0, abs=1e-9)


def test_hole_under_a_bed_is_counted():
  tri = _floor([BED_HOLE])
  assert geometry.floor_area(tri[:, :, :2]) == pytest.approx(12.0 - 0.8)  # what summing gives
  assert room.floor_area(tri, [_box(*BED_HOLE)]) == pytest.approx(12.0, abs=1e-9)


def test_enclosed_scan_gap_is_counted():
  assert room.floor_area(_floor([BED_HOLE]), []) == pytest.approx(12.0, abs=1e-9)


def test_notch_under_a_wardrobe_against_the_walls_is_counted():
  assert room.floor_area(_floor([NOTCH]), [_box(*NOTCH, z1=2.0)]) == pytest.approx(12.0, abs=1e-9)


def test_open_notch_stays_out():
  # Nothing stands there (or only a shelf on the wall, 1.5 m up): an L-shaped room.
  assert room.floor_area(_floor([NOTCH]), []) == pytest.approx(11.5, abs=1e-9)
  assert room.floor_area(_floor([NOTCH]), [_box(*NOTCH, z0=1.5, z1=1.8)]) == pytest.approx(11.5, abs=1e-9)


def test_rotated_bed_off_the_grid():
  """A bed at 30 degrees over a matching hole: within the grid's error of the true 12 m^2."""
  bed = geometry.Box(np.array([2.1, 1.45, 0.3]), np.array([1.2, 0.7, 0.6]), np.radians(30))
  fp = bed.footprint()
  tri = _floor(step=0.05)
  centre = tri[:, :, :2].mean(1)
  e = np.roll(fp, -1, 0) - fp
  inside = np.all(e[None, :, 0] * (centre[:, None, 1] - fp[None, :, 1]) -
                  e[None, :, 1] * (centre[:, None, 0] - fp[None, :, 0]) >= 0, 1)
  holed = tri[~inside]
  assert geometry.floor_area(holed[:, :, :2]) < 12.0 - 0.7
  perimeter = 2 * (1.2 + 0.7)
  assert abs(room.floor_area(holed, [bed]) - 12.0) <= perimeter * room.HOLE_CELL / 2
