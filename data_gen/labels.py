"""Label maps: raw annotation label -> question category (Options.label_map), and the default
for ScanNet, its scannetv2-labels.combined.tsv at the `nyu40` level.

Level `nyu40` (DEFAULT_LEVEL): the TSV's `nyu40class` (chair, office chair, armchair -> chair;
NYU40's 40 classes are what ScanNet's benchmarks count), except where that is empty or one of
NYU40's catch-alls (otherfurniture, otherprop, otherstructure), which cannot be asked about
("how many otherprop(s)"): there the TSV's `category` (the cleaned raw label) is kept. Any TSV
column (category, nyu40class, mpcat40, ...) can be chosen instead.
"""

from __future__ import annotations

import json
import os

from data_gen import scannet

TSV_NAME = "scannetv2-labels.combined.tsv"
DEFAULT_LEVEL = "nyu40"
NYU40_CATCH_ALLS = frozenset({"otherfurniture", "otherprop", "otherstructure"})


def load_label_map(path: str, column: str = DEFAULT_LEVEL) -> tuple[tuple[str, str], ...]:
  """Label map from a JSON object {raw: category} or a TSV with a `raw_category` column and
  `column` (a column name, or `nyu40`: see the module docstring)."""
  if path.endswith(".json"):
    with open(path) as f:
      try:
        m = json.load(f)
      except json.JSONDecodeError as e:
        raise scannet.SceneError(f"{path}: malformed JSON ({e})") from None
    if not isinstance(m, dict):
      raise scannet.SceneError(f"{path}: expected a JSON object raw label -> category")
    return tuple(sorted((str(k).strip().lower(), str(v).strip().lower()) for k, v in m.items()))
  primary, fallback = ("nyu40class", "category") if column == DEFAULT_LEVEL else (column, None)
  with open(path) as f:
    header = f.readline().rstrip("\n").split("\t")
    need = ["raw_category", primary] + ([fallback] if fallback else [])
    if any(c not in header for c in need):
      raise scannet.SceneError(f"{path}: TSV needs columns {', '.join(need)}")
    cols = [header.index(c) for c in need]
    out = {}
    for n, line in enumerate(f, 2):
      cells = line.rstrip("\n").split("\t")
      if len(cells) <= max(cols):
        raise scannet.SceneError(f"{path}: line {n}: too few columns")
      raw, value = cells[cols[0]].strip().lower(), cells[cols[1]].strip().lower()
      if fallback and (not value or value in NYU40_CATCH_ALLS):
        value = cells[cols[2]].strip().lower()
      out[raw] = value
  return tuple(sorted(out.items()))


def find_tsv(scenes_dir: str) -> str | None:
  """ScanNet's label TSV in the scenes folder or its parent (the release keeps it beside scans/)."""
  for d in (scenes_dir, os.path.dirname(os.path.abspath(scenes_dir))):
    p = os.path.join(d, TSV_NAME)
    if os.path.isfile(p):
      return p
  return None


def _has_real_scannet(scenes_dir: str) -> bool:
  for name in scannet.list_scenes(scenes_dir):
    meta = scannet.read_meta(os.path.join(scenes_dir, name, f"{name}.txt"))
    if meta.get("sceneType") != scannet.SYNTHETIC_SCENE_TYPE:
      return True
  return False


def resolve(spec: str, column: str, scenes_dir: str, source: str) -> tuple[tuple[str, str], ...]:
  """The label map of `build --label-map SPEC`: a file, `none`, or `auto` (ScanNet's TSV found
  beside the scenes; required when the folder holds real ScanNet scenes, none otherwise)."""
  if spec == "none":
    return ()
  if spec != "auto":
    return load_label_map(spec, column)
  if source != "scannet":
    return ()
  tsv = find_tsv(scenes_dir)
  if tsv:
    return load_label_map(tsv, column)
  if _has_real_scannet(scenes_dir):
    raise scannet.SceneError(
        f"{scenes_dir}: real ScanNet scenes need the label map: put {TSV_NAME} in this folder or "
        "its parent, or pass --label-map PATH (or --label-map none for raw labels)")
  return ()
