"""`python -m data_gen preview`: a contact sheet (PNG) of a built folder's localization rows,
each frame with its boxes and labels drawn, to look at what the data shows (docs/images)."""

from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image, ImageDraw

BOX_COLOURS = ((255, 64, 64), (64, 220, 64), (80, 140, 255), (255, 200, 40))


def grounding_sheet(data_dir: str, out_png: str, n: int = 6, columns: int = 3, width: int = 320,
                    boxes: bool = True, seed: int = 0) -> int:
  """Writes `n` localization rows of <data_dir>/spld_grounding_data.jsonl (drawn by `seed`,
  one per frame) as a grid of `columns` frames `width` pixels wide, with their boxes unless
  `boxes` is False. Returns the number of frames drawn."""
  path = os.path.join(data_dir, "spld_grounding_data.jsonl")
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  if not rows:
    raise ValueError(f"{path}: no rows to preview")
  picked, frames = [], set()
  for i in np.random.default_rng(seed).permutation(len(rows)):
    if rows[i]["image"][0] not in frames:
      frames.add(rows[i]["image"][0])
      picked.append(rows[i])
    if len(picked) == n:
      break
  tiles = []
  for r in picked:
    with Image.open(os.path.join(data_dir, r["image"][0])) as im:
      im = im.convert("RGB")
    draw = ImageDraw.Draw(im)
    for k, a in enumerate(r["answer"] if boxes else []):
      c = BOX_COLOURS[k % len(BOX_COLOURS)]
      draw.rectangle(a["bbox_2d"], outline=c, width=max(1, im.width // 240))
      draw.text((a["bbox_2d"][0] + 3, a["bbox_2d"][1] + 2), a["label"], fill=c)
    tiles.append(im.resize((width, round(im.height * width / im.width))))
  th = max(t.height for t in tiles)
  rows_n = -(-len(tiles) // columns)
  sheet = Image.new("RGB", (columns * width, rows_n * th), (255, 255, 255))
  for k, t in enumerate(tiles):
    sheet.paste(t, ((k % columns) * width, (k // columns) * th))
  os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
  sheet.save(out_png, optimize=True)
  return len(tiles)
