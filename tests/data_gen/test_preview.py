"""The preview sheet draws each localization row's boxes on its frame."""

import json

import numpy as np
from PIL import Image

from data_gen import build
from data_gen.__main__ import main
from data_gen.tasks.options import Options
from tests.data_gen import handmade


def test_sheet_draws_the_first_box_of_each_row(tmp_path):
  handmade.write(str(tmp_path / "scenes"), "scene0007_00")
  out = tmp_path / "out"
  build.build_dataset(str(tmp_path / "scenes"), str(out), heldout=0, progress=False,
                      opts=Options(allow_repeats=True))
  png = tmp_path / "sheet.png"
  assert main(["preview", "--data", str(out), "--out", str(png), "--n", "2", "--columns", "2",
               "--width", str(handmade.W)]) == 0
  sheet = np.asarray(Image.open(png).convert("RGB"))
  assert sheet.shape == (handmade.H, 2 * handmade.W, 3)
  rows = [json.loads(l) for l in open(out / "spld_grounding_data.jsonl")]
  firsts = {tuple(r["answer"][0]["bbox_2d"]) for r in rows}
  # Each tile's red rectangle is one of the rows' first boxes (the tile is at full size).
  for k in range(2):
    tile = sheet[:, k * handmade.W:(k + 1) * handmade.W].astype(int)
    red = (np.abs(tile - [255, 64, 64]).sum(-1) < 30)
    ys, xs = np.nonzero(red)
    assert (xs.min(), ys.min()) in {(b[0], b[1]) for b in firsts}
