"""The scene sources `build` reads (VSI-Bench's three: ScanNet, ScanNet++, ARKitScenes), each a
module with `list_scenes(root) -> [name]` and `read_scene(root, name) -> scannet.Scene`, and
the signature of a scene's input files that tells a resumed build to redo a changed scene."""

from __future__ import annotations

import hashlib
import os

from data_gen import arkitscenes, scannet, scannetpp

READERS = {"scannet": scannet, "scannetpp": scannetpp, "arkitscenes": arkitscenes}


def reader(source: str):
  if source not in READERS:
    raise ValueError(f"unknown scene source {source!r}; expected one of {sorted(READERS)}")
  return READERS[source]


def list_scenes(source: str, root: str) -> list[str]:
  return reader(source).list_scenes(root)


def read_scene(source: str, root: str, name: str) -> scannet.Scene:
  return reader(source).read_scene(root, name)


def input_signature(root: str, name: str) -> str:
  """Digest of (relative path, size, modification time) of every file under <root>/<name>:
  any file added, removed, rewritten or touched changes it. Stats only, no reading, so a
  real ScanNet scene with thousands of frames costs milliseconds."""
  h = hashlib.sha256()
  base = os.path.join(root, name)
  for d, dirs, files in os.walk(base):
    dirs.sort()
    for f in sorted(files):
      p = os.path.join(d, f)
      try:
        st = os.stat(p)
      except OSError:
        continue  # vanished while listing: the next build sees the change
      h.update(f"{os.path.relpath(p, base)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
  return h.hexdigest()[:16]
