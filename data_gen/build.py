"""Build SpatialLadder-26k-style data from a folder of ScanNet-layout scenes.

Per scene (independent, so scenes can run in parallel and an interrupted build resumes):
read it, measure every object's visibility and 2D box in every usable frame, generate the
questions, copy the referenced frames, and write its questions (not yet lettered) to
<out>/.work/<scene>.json atomically. Then the questions of all scenes are merged in scene
order, balanced dataset-wide (data_gen.balance), lettered per scene, numbered, and written:

  <out>/spld_grounding_data.jsonl, <out>/spld_spatial_data.jsonl   (training scenes)
  <out>/images/<scene>/<N>.jpg                                      (frames they reference)
  <out>/spbench_si.parquet, <out>/spbench_mv.parquet                (held-out scenes)
  <out>/spbench_images/<scene>/<N>.jpg
  <out>/stats.md, <out>/stats.json                                  (Table 6 / Table 9 layout)
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time

import numpy as np
from PIL import Image

from data_gen import balance, geometry, masks, scannet, sources, stats, tasks
from data_gen.tasks import common, single_image
from data_gen.tasks.options import Options

# Workers start from a fork server, not fork(): a process that has imported jax (the trainer,
# the tests) is multithreaded, and fork() of it can deadlock.
_POOL_CONTEXT = multiprocessing.get_context("forkserver")

log = logging.getLogger("data_gen")

VSI_NAMES = {
    "absolute distance": "object_abs_distance",
    "object size": "object_size_estimation",
    "relative distance": "object_rel_distance",
    "relative direction": "object_rel_direction",
    "object count": "object_counting",
    "room size": "room_size_estimation",
    "appearance order": "obj_appearance_order",
}
WORK = ".work"
_FORMAT_VERSION = 3  # 2: pixel masks, surface distances, balance rules; 3: unlettered questions


def observe_scene(scene: scannet.Scene, opts: Options) -> common.Observation:
  """Per usable frame (colour, depth and instance image readable; others are skipped and
  logged) and non-structure object: the visible fraction of its surface points (depth test),
  its visible pixels and their box (data_gen.masks), and each object's surface points."""
  lm = dict(opts.label_map)
  objs = [dataclasses.replace(o, label=lm.get(o.label, o.label)) for o in scene.objects]
  objs = [o for o in objs if o.label and o.label not in opts.excluded_labels]
  n = len(objs)
  owner = np.concatenate([np.full(len(o.vertex_ids), k) for k, o in enumerate(objs)] or [np.zeros(0, int)])
  vid = np.concatenate([o.vertex_ids for o in objs] or [np.zeros(0, int)])
  pts, nrm = scene.vertices[vid], scene.normals[vid]
  vertex_owner = np.full(len(scene.vertices), -1, np.int64)
  vertex_owner[vid] = owner
  index_of_id = {o.object_id: k for k, o in enumerate(objs)}
  tris = tri_owner = None  # the mesh for rasterised masks, built on first need
  kd, kc = scene.k_depth[:3, :3], scene.k_color[:3, :3]
  vis, pix, box, frames, poses = [], [], [], [], []
  use = scene.frames
  if opts.max_frames and len(use) > opts.max_frames:
    use = [use[int(i)] for i in np.unique(np.round(np.linspace(0, len(use) - 1, opts.max_frames)))]
  for fr in use:
    try:
      scannet.check_image(fr.color_path)
      depth = np.rot90(scannet.read_depth(fr.depth_path), fr.rotation)
      mask = None
      if fr.instance_path is not None:
        try:
          mask = masks.instance_mask(fr.instance_path, index_of_id, fr.rotation)
        except (OSError, ValueError, SyntaxError) as e:
          raise scannet.SceneError(f"{fr.instance_path}: unreadable instance image ({e})") from None
    except scannet.SceneError as e:
      scene.skipped.append(f"{e}, frame skipped")
      log.warning("%s, frame skipped", e)
      continue
    if depth.shape != (scene.depth_size[1], scene.depth_size[0]):
      msg = f"{fr.depth_path}: depth image is {depth.shape[::-1]}, expected {scene.depth_size}, frame skipped"
      scene.skipped.append(msg)
      log.warning("%s", msg)
      continue
    if mask is None:
      if tris is None:
        # A face is an object's when all its vertices are (ARKitScenes' objects are the
        # vertices in a box: faces reaching out of it are the floor's or a wall's).
        fo = vertex_owner[scene.faces]
        tris = scene.vertices[scene.faces]
        tri_owner = np.where((fo == fo[:, :1]).all(1), fo[:, 0], -1)
      mask = masks.rasterized_mask(tris, tri_owner, fr.pose, kc, scene.color_size)
    vis.append(geometry.observe_many(pts, nrm, owner, n, fr.pose, depth, kd, opts.depth_tolerance_m))
    c, b = masks.pixel_stats(mask, n, scene.color_size)
    pix.append(c)
    box.append(b)
    frames.append(fr.index)
    poses.append(fr.pose)
  return common.Observation(
      scene=scene.name, labels=[o.label for o in objs], boxes=[o.box for o in objs],
      frame_ids=frames, poses=np.array(poses).reshape(-1, 4, 4), k_color=kc,
      color_size=scene.color_size, vis=np.array(vis).reshape(-1, n),
      bbox=np.array(box).reshape(-1, n, 4), floor_area=scene.floor_area,
      pixels=np.array(pix).reshape(-1, n), points=[scene.vertices[o.vertex_ids] for o in objs])


@dataclasses.dataclass(frozen=True)
class _Job:
  scenes_dir: str
  out: str
  name: str
  heldout: bool
  seed: int
  opts: Options
  fingerprint: str
  source: str = "scannet"


def _fingerprint(opts: Options, seed: int, heldout: bool, source: str, inputs: str) -> str:
  key = json.dumps([_FORMAT_VERSION, repr(opts), seed, heldout, source, inputs])
  return hashlib.sha256(key.encode()).hexdigest()[:16]


def _copy_frames(scene: scannet.Scene, frame_ids: list[int], dst: str) -> None:
  """The referenced frames as <dst>/<N>.jpg: JPEG files byte for byte, other images (PNG,
  portrait frames to turn upright) re-encoded. The folder is emptied first, so a redone scene
  keeps no frame of its previous inputs."""
  shutil.rmtree(dst, ignore_errors=True)
  os.makedirs(dst)
  by_id = {f.index: f for f in scene.frames}
  for i in frame_ids:
    fr = by_id[i]
    target = os.path.join(dst, f"{i}.jpg")
    tmp = target + ".tmp"
    if fr.rotation == 0 and fr.color_path.lower().endswith((".jpg", ".jpeg")):
      shutil.copyfile(fr.color_path, tmp)
    else:
      with Image.open(fr.color_path) as im:
        rgb = np.rot90(np.asarray(im.convert("RGB")), fr.rotation)
      Image.fromarray(np.ascontiguousarray(rgb)).save(tmp, "JPEG", quality=95)
    os.replace(tmp, target)


def process_scene(job: _Job) -> dict:
  """Questions of one scene as finished rows (without question ids); writes the work file."""
  t0 = time.perf_counter()
  work = os.path.join(job.out, WORK, f"{job.name}.json")
  try:
    scene = sources.read_scene(job.source, job.scenes_dir, job.name)
  except (scannet.SceneError, OSError) as e:
    log.warning("scene %s skipped: %s", job.name, e)
    result = {"scene": job.name, "fingerprint": job.fingerprint, "skipped": str(e)}
    _write_json_atomic(work, result)
    return result
  obs = observe_scene(scene, job.opts)
  modalities = tasks.MODALITIES[:2] if job.heldout else tasks.MODALITIES
  qas, sel = tasks.generate(obs, job.opts, job.seed, modalities, job.heldout, lettered=False)
  img_dir = "spbench_images" if job.heldout else "images"
  used = sorted({obs.frame_ids[f] for qa in qas for f in qa.frames})
  _copy_frames(scene, used, os.path.join(job.out, img_dir, job.name))
  # Unlettered: the merge lets the dataset-wide balance drop rows first, then letters what
  # is kept (tasks.letter), so that letters cycle within each scene.
  questions = []
  for qa in qas:
    q = {"data_type": qa.data_type, "question_type": qa.question_type, "question": qa.question,
         "answer": qa.answer, "choices": qa.choices, "frames": [obs.frame_ids[f] for f in qa.frames]}
    if qa.data_type == "single_image" and not job.heldout:
      q["grounding"] = single_image.grounding(obs, qa)
    questions.append(q)
  result = {
      "scene": job.name, "fingerprint": job.fingerprint, "heldout": job.heldout,
      "source": scene.source, "questions": questions,
      "rejected": [list(k) + [v] for k, v in sorted(sel.rejected.items())],
      "examined": [list(k) + [v] for k, v in sorted(sel.examined.items())],
      "skipped_items": scene.skipped, "n_frames": len(obs.frame_ids), "n_objects": len(obs.labels),
      "seconds": time.perf_counter() - t0,
  }
  _write_json_atomic(work, result)
  return result


def _write_json_atomic(path: str, obj) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f)
  os.replace(tmp, path)


def write_jsonl_atomic(path: str, rows: list[dict]) -> None:
  """rows as JSONL at path, written to a temporary name and renamed (readers never see half a file)."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    for r in rows:
      f.write(json.dumps(r, ensure_ascii=False) + "\n")
  os.replace(tmp, path)


def choose_heldout(names: list[str], heldout, seed: int) -> set[str]:
  """Held-out scenes: an explicit list of names, a count (int) or a fraction (float < 1),
  drawn by `seed` from the sorted names. A string is the command-line form: one or more
  comma-separated scene names (a name wins over a number: ARKitScenes names are digits), or a
  count or fraction."""
  if isinstance(heldout, str):
    parts = [t.strip() for t in heldout.split(",") if t.strip()]
    if len(parts) == 1 and parts[0] not in names:
      try:
        heldout = float(parts[0])
      except ValueError:
        heldout = parts
      else:
        heldout = int(heldout) if heldout >= 1 else heldout
    else:
      heldout = parts
  if heldout is None or heldout == 0:
    return set()
  if isinstance(heldout, (list, tuple, set)):
    missing = set(heldout) - set(names)
    if missing:
      raise ValueError(f"held-out scenes not in the scenes folder: {sorted(missing)}")
    return set(heldout)
  k = int(heldout) if float(heldout) >= 1 else int(round(float(heldout) * len(names)))
  if k >= len(names) and names:
    raise ValueError(f"held-out count {k} leaves no training scene among {len(names)}")
  order = np.random.default_rng(seed).permutation(len(names))
  return {names[i] for i in order[:k]}


def build_dataset(scenes_dir: str, out: str, seed: int = 0, opts: Options | None = None,
                  heldout=0.1, workers: int = 1, scenes: list[str] | None = None,
                  progress: bool = True, source: str = "scannet") -> dict:
  """Turn scenes of `source` (sources.READERS: scannet, scannetpp, arkitscenes) into
  SpatialLadder-26k-style files under `out`.

  heldout: names, a count or a fraction of scenes kept out of training and written as
  SPBench-SI/MV parquet (see choose_heldout). Finished scenes found in <out>/.work with the
  same options and unchanged input files are not redone. Returns the statistics (also
  written to <out>/stats.json).
  """
  opts = opts or Options()
  names = scenes if scenes is not None else sources.list_scenes(source, scenes_dir)
  names = sorted(names)
  if not names:
    raise scannet.SceneError(f"{scenes_dir}: no {source} scenes")
  held = choose_heldout(names, heldout, seed)
  os.makedirs(os.path.join(out, WORK), exist_ok=True)
  results: dict[str, dict] = {}
  todo = []
  for n in names:
    fp = _fingerprint(opts, seed, n in held, source, sources.input_signature(scenes_dir, n))
    work = os.path.join(out, WORK, f"{n}.json")
    if os.path.isfile(work):
      try:
        with open(work) as f:
          r = json.load(f)
        if r.get("fingerprint") == fp:
          results[n] = r
          continue
      except (OSError, json.JSONDecodeError):
        pass  # a damaged work file: redo the scene
    todo.append(_Job(scenes_dir, out, n, n in held, seed, opts, fp, source))
  t0 = time.perf_counter()
  if progress and len(results):
    print(f"[build] resuming: {len(results)} scenes already done", file=sys.stderr, flush=True)
  pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=_POOL_CONTEXT) if workers > 1 and len(todo) > 1 else None
  it = pool.map(process_scene, todo) if pool else map(process_scene, todo)
  try:
    for k, r in enumerate(it, 1):
      results[r["scene"]] = r
      if progress and (k % max(1, len(todo) // 20) == 0 or k == len(todo)):
        el = time.perf_counter() - t0
        print(f"[build] {k}/{len(todo)} scenes, {el:.0f}s elapsed, eta {el / k * (len(todo) - k):.0f}s",
              file=sys.stderr, flush=True)
  finally:
    if pool:
      pool.shutdown()
  return _merge(out, names, results, held, seed, opts, progress)


def _rows_of_scene(r: dict, questions: list[dict], seed: int) -> tuple[list, list, list]:
  """Spatial, grounding and benchmark rows of one finished scene's kept questions, lettered."""
  name = r["scene"]
  qas = [common.QA(q["data_type"], q["question_type"], q["question"], q["answer"], q["frames"], [],
                   choices=q["choices"]) for q in questions]
  tasks.letter(qas, seed, name)
  spatial, grounding, bench = [], [], []
  for q, qa in zip(questions, qas):
    if r["heldout"]:
      bench.append({
          "dataset": r["source"], "scene_name": name, "question": qa.question,
          "options": qa.options, "ground_truth": qa.final_answer,
          "question_type": VSI_NAMES[qa.question_type],
          "images": [f"{i}.jpg" for i in q["frames"]], "data_type": qa.data_type})
      continue
    paths = [f"images/{name}/{i}.jpg" for i in q["frames"]]
    spatial.append({"question": qa.question, "options": qa.options, "answer": qa.final_answer,
                    "image": paths, "question_type": qa.question_type, "data_type": qa.data_type})
    if "grounding" in q:
      grounding.append({"question": qa.question, "answer": q["grounding"], "image": paths,
                        "data_type": "single_image"})
  return spatial, grounding, bench


def _merge(out: str, names: list[str], results: dict[str, dict], held: set[str], seed: int,
           opts: Options, show: bool = True) -> dict:
  done = [results[n] for n in names if "skipped" not in results[n]]
  # Dataset-wide answer balance over the training rows in build order (data_gen.balance).
  train = [(r["scene"], q) for r in done if not r["heldout"] for q in r["questions"]]
  keep = balance.keep_mask([(q["data_type"], q["question_type"], q["answer"], q["choices"])
                            for _, q in train], opts.answer_balance, opts.balance_min_count)
  dropped = collections.Counter()
  kept_of: dict[str, list[dict]] = collections.defaultdict(list)
  for (name, q), k in zip(train, keep):
    if k:
      kept_of[name].append(q)
    else:
      dropped[f"{q['data_type']} / {q['question_type']} / {stats.DATASET_BALANCE}"] += 1
  spatial, grounding, si, mv = [], [], [], []
  for r in done:
    s, g, b = _rows_of_scene(r, r["questions"] if r["heldout"] else kept_of[r["scene"]], seed)
    spatial += s
    grounding += g
    for row in b:
      (si if row["data_type"] == "single_image" else mv).append(row)
  spatial = [{"question_id": i, **row} for i, row in enumerate(spatial)]
  grounding = [{"question_id": i, **row} for i, row in enumerate(grounding)]
  write_jsonl_atomic(os.path.join(out, "spld_spatial_data.jsonl"), spatial)
  write_jsonl_atomic(os.path.join(out, "spld_grounding_data.jsonl"), grounding)
  for rows, name in ((si, "spbench_si.parquet"), (mv, "spbench_mv.parquet")):
    write_bench_parquet(os.path.join(out, name), rows)
  st = stats.compute(spatial, grounding, si, mv, [results[n] for n in names], held, dropped,
                     opts.balance_min_count)
  _write_json_atomic(os.path.join(out, "stats.json"), st)
  text = stats.render(st)
  with open(os.path.join(out, "stats.md.tmp"), "w") as f:
    f.write(text)
  os.replace(os.path.join(out, "stats.md.tmp"), os.path.join(out, "stats.md"))
  if show:
    print(text, flush=True)
  return st


BENCH_COLUMNS = ("id", "dataset", "scene_name", "question", "options", "ground_truth",
                 "question_type", "images")


def write_bench_parquet(path: str, rows: list[dict]) -> None:
  """SPBench/VSI-Bench-style parquet: id, dataset, scene_name, question, options (list or
  null), ground_truth, question_type (VSI-Bench name), images (frame file names)."""
  import pyarrow as pa
  import pyarrow.parquet as pq

  schema = pa.schema([
      ("id", pa.int64()), ("dataset", pa.string()), ("scene_name", pa.string()),
      ("question", pa.string()), ("options", pa.list_(pa.string())),
      ("ground_truth", pa.string()), ("question_type", pa.string()),
      ("images", pa.list_(pa.string())),
  ])
  cols = {c: [] for c in BENCH_COLUMNS}
  for i, r in enumerate(rows):
    cols["id"].append(i)
    for c in BENCH_COLUMNS[1:]:
      cols[c].append(r[c])
  table = pa.table(cols, schema=schema)
  tmp = path + ".tmp"
  pq.write_table(table, tmp)
  os.replace(tmp, path)
