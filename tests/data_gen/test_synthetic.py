"""Procedural layouts: object counts, categories, sizes, non-overlap, support, camera path."""

import numpy as np

from data_gen import categories, geometry, synthetic


def _scenes(n=40):
  return [synthetic.make_scene(np.random.default_rng([11, i]), f"s{i}") for i in range(n)]


def test_layouts_are_physical():
  seen = set()
  for s in _scenes():
    assert 8 <= len(s.objects) <= 25
    floor = [o for o in s.objects if o.box.z_range()[0] == 0.0]
    raised = [o for o in s.objects if o.box.z_range()[0] > 0.0]
    for o in s.objects:
      seen.add(o.category)
      cat = categories.CATEGORY_BY_NAME[o.category]
      assert np.all(o.box.size >= np.array(cat.size_min) - 1e-9)
      assert np.all(o.box.size <= np.array(cat.size_max) + 1e-9)
      fp = o.box.footprint()
      assert fp.min() >= 0 and np.all(fp.max(0) <= s.room[:2])  # inside the room
      assert o.box.z_range()[1] <= s.room[2]
      # Parts stay inside the object's box.
      c, si = np.cos(o.box.yaw), np.sin(o.box.yaw)
      for p in o.parts:
        assert p.yaw == o.box.yaw
        d = p.center - o.box.center
        local = np.array([c * d[0] + si * d[1], -si * d[0] + c * d[1], d[2]])
        assert np.all(np.abs(local) + p.size / 2 <= o.box.size / 2 + 1e-9)
    # Floor objects do not overlap (chairs may tuck under their table top only).
    for i, a in enumerate(floor):
      for b in floor[i + 1:]:
        if {a.category, b.category} & {"chair"} and {a.category, b.category} & {"table", "desk"}:
          continue
        assert geometry.rect_distance(a.box.footprint(), b.box.footprint()) > 0.05
    # Raised objects stand on a support's top, inside its footprint.
    for o in raised:
      z0 = o.box.z_range()[0]
      sup = [f for f in floor if abs(f.box.z_range()[1] - z0) < 1e-9 and categories.CATEGORY_BY_NAME[f.category].support]
      assert sup, o.category
      assert geometry.rect_distance(o.box.footprint(), sup[0].box.footprint()) == 0.0
      assert categories.CATEGORY_BY_NAME[o.category].placement == "top"
    # The camera never enters an object and moves smoothly.
    cams = s.poses[:, :3, 3]
    for o in s.objects:
      for c in cams:
        assert not np.all(np.abs(c - o.box.center) < o.box.size / 2 + 0.3)
    steps = np.linalg.norm(np.diff(cams, axis=0), axis=1)
    assert steps.max() < 1.0
    for p in s.poses:
      r = p[:3, :3]
      assert np.allclose(r.T @ r, np.eye(3), atol=1e-9) and np.isclose(np.linalg.det(r), 1)
  assert len(seen) >= 15


def test_scene_is_deterministic():
  a = synthetic.make_scene(np.random.default_rng([3, 4]), "x")
  b = synthetic.make_scene(np.random.default_rng([3, 4]), "x")
  assert [o.category for o in a.objects] == [o.category for o in b.objects]
  assert np.array_equal(a.poses, b.poses)
