"""Instance masks: pixel counts and boxes, instance images, and the rasterised mesh giving
what the instance images of a procedural scene say."""

import os

import numpy as np
from PIL import Image

from data_gen import build, masks, scannet
from data_gen.tasks.options import Options
from tests.data_gen import handmade


def test_pixel_stats_at_the_colour_size_and_scaled():
  m = np.full((6, 8), -1)
  m[1:3, 2:5] = 0  # 2 rows x 3 columns
  m[5, 7] = 1
  count, box = masks.pixel_stats(m, 3, (8, 6))
  assert count.tolist() == [6, 1, 0]
  assert box.tolist() == [[2, 1, 4, 2], [7, 5, 7, 5], [-1, -1, -1, -1]]
  # The same mask for a 16 x 12 colour frame: each mask pixel is 2 x 2 colour pixels.
  count, box = masks.pixel_stats(m, 3, (16, 12))
  assert count.tolist() == [24, 4, 0]
  assert box.tolist() == [[4, 2, 9, 5], [14, 10, 15, 11], [-1, -1, -1, -1]]


def test_instance_mask_maps_object_ids(tmp_path):
  ids = np.array([[0, 1, 2], [3, 3, 9]], np.uint8)  # objectId + 1; 9 names no usable object
  p = str(tmp_path / "0.png")
  Image.fromarray(ids).save(p)
  m = masks.instance_mask(p, {0: 5, 2: 7})
  assert m.tolist() == [[-1, 5, -1], [7, 7, -1]]
  assert masks.instance_mask(p, {0: 5, 2: 7}, rotation=1).tolist() == np.rot90(m).tolist()


def test_rasterised_mesh_matches_the_instance_images(tmp_path):
  """The procedural writer's instance images come from the render mesh; without them the
  build rasterises the scan mesh: the two agree on every box (to a pixel) and count."""
  handmade.write(str(tmp_path), "scene0005_00")
  with_images = build.observe_scene(scannet.read_scene(str(tmp_path), "scene0005_00"), Options())
  d = os.path.join(str(tmp_path), "scene0005_00", "instance-filt")
  for f in os.listdir(d):
    os.remove(os.path.join(d, f))
  rasterised = build.observe_scene(scannet.read_scene(str(tmp_path), "scene0005_00"), Options())
  assert with_images.labels == rasterised.labels
  seen = with_images.bbox[..., 0] >= 0
  assert seen.sum() >= 10 and (seen == (rasterised.bbox[..., 0] >= 0)).all()
  assert np.abs(with_images.bbox - rasterised.bbox)[seen].max() <= 1
  both = with_images.pixels[seen]
  assert np.abs(both - rasterised.pixels[seen]).max() <= 0.05 * both.max()


def test_unreadable_instance_image_skips_the_frame(tmp_path):
  handmade.write(str(tmp_path), "scene0006_00")
  p = os.path.join(str(tmp_path), "scene0006_00", "instance-filt", "10.png")
  with open(p, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n broken")
  s = scannet.read_scene(str(tmp_path), "scene0006_00")
  obs = build.observe_scene(s, Options())
  assert 10 not in obs.frame_ids and len(obs.frame_ids) == len(handmade.POSES) - 1
  assert any("instance-filt/10.png" in r and "frame skipped" in r for r in s.skipped)
