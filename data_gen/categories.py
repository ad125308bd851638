"""Indoor object categories for procedural scenes: size ranges, colours and part layouts.

Every object is a union of axis-aligned boxes ("parts") in its own frame: x along the length,
y along the depth (the back is at -y), z up, origin at the centre of the footprint on the floor.
Parts make the renders recognisable (a table has a top and four legs, a chair a seat and a back)
while every geometric quantity stays exact.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# (centre (3,), size (3,)) of one part in the object's frame.
Part = tuple[np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Category:
  name: str
  size_min: tuple[float, float, float]  # (length x, depth y, height z) in metres
  size_max: tuple[float, float, float]
  palette: tuple[tuple[int, int, int], ...]  # RGB; the first is the category's own colour
  shape: str  # part layout, see `parts`; each category has its own
  placement: str  # "wall" (back to a wall), "free" (anywhere on the floor), "top" (on a support)
  weight: float = 1.0  # relative sampling frequency
  support: bool = False  # other objects may stand on its top

  @property
  def colour(self) -> tuple[int, int, int]:
    return self.palette[0]


# Colour families shared across categories, so that colour alone does not name a category
# (a white cabinet, a wooden nightstand, a brown box): shape does. Each palette starts with
# the category's own colour, the only one used when colour variation is off.
WOODS = ((150, 95, 55), (110, 70, 40), (175, 130, 85), (90, 60, 40), (200, 165, 120))
PAINTED = ((230, 228, 220), (120, 130, 150), (60, 62, 70), (160, 160, 155))
FABRICS = ((70, 90, 170), (150, 60, 60), (90, 120, 90), (120, 110, 100), (190, 170, 140))
WHITES = ((235, 235, 235), (215, 215, 225), (250, 250, 250), (200, 205, 210))
DARKS = ((25, 25, 30), (40, 40, 50), (70, 70, 80), (150, 150, 160))


def _p(own, *families) -> tuple[tuple[int, int, int], ...]:
  return (own,) + tuple(c for f in families for c in f if c != own)


CATEGORIES: tuple[Category, ...] = (
    Category("chair", (0.44, 0.46, 0.80), (0.55, 0.56, 0.98), _p((196, 120, 48), WOODS, FABRICS), "chair", "free", 0.4),
    Category("table", (1.00, 0.70, 0.72), (1.70, 1.00, 0.78), _p((150, 95, 55), WOODS, PAINTED), "table", "free", 1.2, True),
    Category("desk", (1.00, 0.55, 0.72), (1.60, 0.80, 0.77), _p((120, 130, 150), PAINTED, WOODS), "desk", "wall", 1.0, True),
    Category("sofa", (1.60, 0.80, 0.75), (2.30, 1.00, 0.90), _p((70, 90, 170), FABRICS), "sofa", "wall", 0.9),
    Category("bed", (1.90, 1.20, 0.90), (2.15, 1.70, 1.15), _p((225, 225, 240), FABRICS, WHITES), "bed", "wall", 0.7),
    Category("cabinet", (0.60, 0.40, 0.80), (1.20, 0.60, 1.10), _p((110, 70, 40), WOODS, PAINTED), "cabinet", "wall", 1.0, True),
    Category("bookshelf", (0.60, 0.28, 1.50), (1.10, 0.40, 1.95), _p((160, 110, 70), WOODS, PAINTED), "shelf", "wall", 0.9),
    Category("refrigerator", (0.60, 0.62, 1.60), (0.80, 0.75, 1.85), _p((235, 235, 235), WHITES, DARKS), "fridge", "wall", 0.5),
    Category("toilet", (0.38, 0.62, 0.70), (0.45, 0.72, 0.80), _p((250, 250, 250), WHITES), "toilet", "wall", 0.4),
    Category("bathtub", (1.50, 0.70, 0.50), (1.70, 0.80, 0.60), _p((200, 230, 240), WHITES), "tub", "wall", 0.3),
    Category("nightstand", (0.40, 0.35, 0.50), (0.55, 0.45, 0.65), _p((140, 90, 60), WOODS, PAINTED), "nightstand", "wall", 0.7, True),
    Category("trash can", (0.26, 0.26, 0.40), (0.40, 0.40, 0.70), _p((60, 60, 60), DARKS, WHITES), "bin", "free", 1.0),
    Category("plant", (0.30, 0.30, 0.60), (0.55, 0.55, 1.30), _p((40, 150, 50), ((60, 120, 40), (30, 100, 60), (90, 150, 60))), "plant", "free", 0.9),
    Category("box", (0.30, 0.25, 0.20), (0.60, 0.45, 0.45), _p((200, 160, 100), WOODS, WHITES), "box", "free", 0.8),
    Category("backpack", (0.30, 0.18, 0.40), (0.36, 0.25, 0.50), _p((200, 40, 40), FABRICS, DARKS), "bag", "free", 0.6),
    Category("stool", (0.32, 0.32, 0.45), (0.42, 0.42, 0.75), _p((90, 60, 120), WOODS, DARKS), "stool", "free", 0.6),
    Category("washing machine", (0.58, 0.58, 0.82), (0.62, 0.65, 0.88), _p((215, 215, 225), WHITES), "washer", "wall", 0.3),
    Category("tv", (0.90, 0.20, 0.60), (1.40, 0.28, 0.85), _p((25, 25, 30), DARKS), "tv", "top", 0.6),
    Category("monitor", (0.45, 0.18, 0.38), (0.65, 0.24, 0.50), _p((40, 40, 50), DARKS), "screen", "top", 1.0),
    Category("lamp", (0.22, 0.22, 0.40), (0.38, 0.38, 0.62), _p((250, 215, 60), ((240, 235, 210), (200, 120, 60), (120, 160, 200))), "lamp", "top", 1.0),
    Category("laptop", (0.30, 0.22, 0.20), (0.38, 0.26, 0.25), _p((150, 150, 160), DARKS), "laptop", "top", 0.9),
)
CATEGORY_BY_NAME = {c.name: c for c in CATEGORIES}

# Structural labels written into the mesh aggregation; questions never mention them.
STRUCTURE_COLOURS = {
    "floor": (175, 160, 140),
    "wall": (205, 200, 190),
    "ceiling": (240, 240, 240),
}


def _b(cx, cy, cz, sx, sy, sz) -> Part:
  return np.array([cx, cy, cz], np.float64), np.array([sx, sy, sz], np.float64)


def _bottom(cx, cy, z0, sx, sy, sz) -> Part:
  """A part given by its bottom-centre point."""
  return _b(cx, cy, z0 + sz / 2, sx, sy, sz)


def parts(shape: str, size: np.ndarray) -> list[Part]:
  """Boxes of one object of `shape` with overall `size` (l, w, h); they fill the size exactly.

  Returns: list of (centre (3,), size (3,)) in the object frame.
  """
  l, w, h = (float(s) for s in size)
  if shape == "box":  # a carton with an overhanging lid
    lid = min(0.05, h * 0.2)
    return [_bottom(0, 0, 0, l - 0.02, w - 0.02, h - lid), _bottom(0, 0, h - lid, l, w, lid)]
  if shape == "cabinet":  # plinth, body, two doors with a gap, two handles (front is +y)
    plinth, door, handle = 0.08, 0.02, 0.02
    body_w = w - door - handle
    out = [_bottom(0, -(door + handle) / 2 - 0.02, 0, l - 0.04, body_w - 0.04, plinth),
           _bottom(0, -(door + handle) / 2, plinth, l, body_w, h - plinth)]
    front = w / 2 - door - handle
    for sx in (-1, 1):
      out.append(_bottom(sx * (l / 4 + 0.0025), front + door / 2, plinth + 0.02, l / 2 - 0.015, door, h - plinth - 0.04))
      out.append(_bottom(sx * 0.04, w / 2 - handle / 2, h * 0.55, 0.02, handle, h * 0.2))
    return out
  if shape == "nightstand":  # short legs, a body, an overhanging top, a drawer and a knob
    leg, top, knob = 0.1, 0.03, 0.015
    out = [_bottom(sx * (l / 2 - 0.04), sy * (w / 2 - 0.04) - knob / 2, 0, 0.04, 0.04, leg)
           for sx in (-1, 1) for sy in (-1, 1)]
    out.append(_bottom(0, -knob / 2, leg, l - 0.04, w - 0.04 - knob, h - leg - top))
    out.append(_bottom(0, -knob / 2, h - top, l, w - knob, top))
    front = (w - 0.04 - knob) / 2 - knob / 2
    out.append(_bottom(0, front + 0.0075, h - top - 0.2, l - 0.08, 0.015, 0.16))
    out.append(_bottom(0, w / 2 - 0.01, h - top - 0.13, 0.04, 0.02, 0.03))  # on the drawer
    return out
  if shape == "fridge":  # body, freezer and main doors, two handles
    door, handle = 0.03, 0.03
    body_w = w - door - handle
    out = [_bottom(0, -(door + handle) / 2, 0, l, body_w, h)]
    front = w / 2 - door - handle
    split = h * 0.68
    out.append(_bottom(0, front + door / 2, 0.02, l - 0.02, door, split - 0.03))
    out.append(_bottom(0, front + door / 2, split, l - 0.02, door, h - split - 0.02))
    out.append(_bottom(l / 2 - 0.08, w / 2 - handle / 2, split * 0.45, 0.03, handle, split * 0.4))
    out.append(_bottom(l / 2 - 0.08, w / 2 - handle / 2, split + 0.05, 0.03, handle, (h - split) * 0.5))
    return out
  if shape == "washer":  # body, a square porthole door, a control strip at the back top
    door, strip = 0.04, 0.07
    out = [_bottom(0, -door / 2, 0, l, w - door, h - strip),
           _bottom(0, -(w - 0.15) / 2, h - strip, l, 0.15, strip)]
    d = min(l, h) * 0.5
    out.append(_bottom(0, w / 2 - door / 2, (h - strip) * 0.45 - d / 2, d, door, d))
    return out
  if shape in ("tub", "bin"):  # open: a base and four walls, thick rims for a tub
    t = 0.08 if shape == "tub" else 0.015
    return [_bottom(0, 0, 0, l, w, t),
            _bottom(0, -(w - t) / 2, t, l, t, h - t), _bottom(0, (w - t) / 2, t, l, t, h - t),
            _bottom(-(l - t) / 2, 0, t, t, w - 2 * t, h - t), _bottom((l - t) / 2, 0, t, t, w - 2 * t, h - t)]
  if shape == "bag":  # a body, a front pocket and a top handle
    pocket, handle = 0.06, 0.07
    return [_bottom(0, -pocket / 2, 0, l, w - pocket, h - handle),
            _bottom(0, w / 2 - pocket / 2, 0.03, l * 0.7, pocket, (h - handle) * 0.45),
            _bottom(0, -pocket / 2, h - handle, l * 0.35, 0.03, handle)]
  if shape == "stool":  # a thick seat, four legs and a ring of rails
    seat, leg, rail = 0.05, 0.035, 0.02
    out = [_bottom(0, 0, h - seat, l, w, seat)]
    for sx in (-1, 1):
      for sy in (-1, 1):
        out.append(_bottom(sx * (l - leg) / 2 * 0.8, sy * (w - leg) / 2 * 0.8, 0, leg, leg, h - seat))
    z = (h - seat) * 0.35
    span_x, span_y = (l - leg) * 0.8, (w - leg) * 0.8
    for sy in (-1, 1):
      out.append(_bottom(0, sy * span_y / 2, z, span_x, rail, rail))
    for sx in (-1, 1):
      out.append(_bottom(sx * span_x / 2, 0, z, rail, span_y, rail))
    return out
  if shape == "tv":  # a wide panel on two feet
    foot = 0.05
    out = [_bottom(sx * l * 0.35, 0, 0, 0.08, w, foot) for sx in (-1, 1)]
    out.append(_bottom(0, 0, foot, l, 0.06, h - foot))
    return out
  if shape == "table":
    t, leg = min(0.05, h * 0.15), min(0.06, l * 0.2, w * 0.2)
    out = [_bottom(0, 0, h - t, l, w, t)]
    for sx in (-1, 1):
      for sy in (-1, 1):
        out.append(_bottom(sx * (l - leg) / 2, sy * (w - leg) / 2, 0, leg, leg, h - t))
    return out
  if shape == "desk":
    t, side = 0.04, 0.04
    out = [_bottom(0, 0, h - t, l, w, t)]
    for sx in (-1, 1):
      out.append(_bottom(sx * (l - side) / 2, 0, 0, side, w, h - t))
    return out
  if shape == "chair":
    seat_z, t, leg, back = 0.44, 0.05, 0.04, 0.05
    out = [_bottom(0, 0, seat_z, l, w, t)]
    for sx in (-1, 1):
      for sy in (-1, 1):
        out.append(_bottom(sx * (l - leg) / 2, sy * (w - leg) / 2, 0, leg, leg, seat_z))
    out.append(_bottom(0, -(w - back) / 2, seat_z + t, l, back, h - seat_z - t))
    return out
  if shape == "sofa":
    base_h, back, arm = 0.42, 0.22, 0.16
    out = [_bottom(0, 0, 0, l, w, base_h)]
    out.append(_bottom(0, -(w - back) / 2, base_h, l, back, h - base_h))
    for sx in (-1, 1):
      out.append(_bottom(sx * (l - arm) / 2, back / 2, base_h, arm, w - back, 0.22))
    return out
  if shape == "bed":
    # Length along x, headboard at -x; mattress and pillow in a lighter tone are one object.
    head, mat_h = 0.08, 0.5
    return [
        _bottom(head / 2, 0, 0, l - head, w, mat_h),
        _bottom(-(l - head) / 2, 0, 0, head, w, h),
        _bottom(-(l - head) / 2 + 0.35, 0, mat_h, 0.4, w * 0.7, 0.1),
    ]
  if shape == "shelf":
    side, back, board = 0.03, 0.02, 0.03
    out = [_bottom(sx * (l - side) / 2, 0, 0, side, w, h) for sx in (-1, 1)]
    out.append(_bottom(0, -(w - back) / 2, 0, l - 2 * side, back, h))
    n = max(3, int(h / 0.38))
    for i in range(n + 1):
      z = min(i * (h - board) / n, h - board)
      out.append(_bottom(0, back / 2, z, l - 2 * side, w - back, board))
    return out
  if shape == "toilet":
    tank = 0.2
    return [
        _bottom(0, tank / 2, 0, l * 0.85, w - tank, 0.42),
        _bottom(0, -(w - tank) / 2, 0, l, tank, h),
    ]
  if shape == "plant":
    pot = 0.32
    return [
        _bottom(0, 0, 0, l * 0.55, w * 0.55, h * pot),
        _bottom(0, 0, h * pot, l, w, h * (1 - pot)),
    ]
  if shape == "screen":
    base_h, panel = 0.03, 0.04
    screen_h = h * 0.72
    return [
        _bottom(0, 0, 0, l * 0.4, w, base_h),
        _bottom(0, -w / 4, base_h, 0.05, 0.04, h - screen_h - base_h),
        _bottom(0, -w / 4, h - screen_h, l, panel, screen_h),
    ]
  if shape == "lamp":
    shade = 0.4
    return [
        _bottom(0, 0, 0, l * 0.6, w * 0.6, 0.03),
        _bottom(0, 0, 0.03, 0.03, 0.03, h * (1 - shade) - 0.03),
        _bottom(0, 0, h * (1 - shade), l, w, h * shade),
    ]
  if shape == "laptop":
    base = 0.02
    return [
        _bottom(0, 0.01, 0, l, w - 0.02, base),
        _bottom(0, -(w - 0.02) / 2, 0, l, 0.02, h),
    ]
  raise ValueError(f"unknown shape {shape!r}")


def part_colours(shape: str, colour: np.ndarray, n: int) -> np.ndarray:
  """Per-part RGB (n, 3) in [0, 1] from the main colour (3,) in [0, 1]: a second tone makes
  the parts read as different materials (dark legs, a terracotta pot, a lit lamp shade)."""
  out = np.tile(np.asarray(colour, np.float64), (n, 1))
  grey = np.array([0.25, 0.25, 0.27])
  if shape == "bed":
    out[1] = np.array([0.45, 0.3, 0.2])  # wooden headboard
    out[2] = np.array([0.95, 0.95, 0.9])  # pillow
  elif shape == "screen":
    out[:2] = np.array([0.55, 0.55, 0.58])  # light stand under a dark panel
  elif shape == "plant":
    out[0] = np.array([0.7, 0.35, 0.2])  # terracotta pot
  elif shape == "lamp":
    out[:2] = grey
  elif shape == "chair":
    out[1:5] = out[1:5] * 0.5
  elif shape in ("table", "stool"):
    out[1:] = out[1:] * 0.7
  elif shape == "cabinet":
    out[0] = out[0] * 0.5  # dark plinth
    out[[2, 4]] = np.clip(out[[2, 4]] * 1.12, 0, 1)  # doors a shade lighter
    out[[3, 5]] = grey  # handles
  elif shape == "nightstand":
    out[:4] = out[:4] * 0.55  # legs
    out[6] = np.clip(out[6] * 1.12, 0, 1)  # drawer
    out[7] = grey  # knob
  elif shape == "box":
    out[1] = np.clip(out[1] * 1.1, 0, 1)
  elif shape == "fridge":
    out[3:5] = grey
  elif shape == "washer":
    out[2] = np.array([0.2, 0.25, 0.3])  # the glass door
    out[1] = out[1] * 0.8
  elif shape in ("tub", "bin"):
    out[0] = out[0] * 0.75  # the inside floor reads darker
  elif shape == "bag":
    out[1] = out[1] * 0.75
    out[2] = grey
  elif shape == "tv":
    out[:2] = grey
  elif shape == "laptop":
    out[1] = out[1] * 0.5
  return np.clip(out, 0, 1)
