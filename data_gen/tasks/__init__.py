"""Question generation from an Observation (see common.Observation): the task types of the
paper's Tables 5 and 6 for single-image, multi-view and video data."""

from __future__ import annotations

from data_gen.tasks import common, multi_view, single_image, video
from data_gen.tasks.common import QA, Observation, Selector
from data_gen.tasks.options import DEFAULT_CAPS, Options

__all__ = ["QA", "Observation", "Options", "DEFAULT_CAPS", "generate", "letter", "Selector"]

MODALITIES = ("single_image", "multi_view", "video")


def generate(obs: Observation, opts: Options, seed: int, modalities=MODALITIES,
             heldout: bool = False, lettered: bool = True) -> tuple[list[QA], Selector]:
  """All questions of one scene in modality order, lettered (see `letter`) unless
  `lettered` is False; deterministic in (seed, scene name). `heldout` scenes take the
  held-out caps (opts.heldout_caps)."""
  sel = Selector(obs, opts, heldout)
  for m in modalities:
    rng = common.scene_rng(seed, obs.scene, m)
    {"single_image": single_image.generate, "multi_view": multi_view.generate,
     "video": video.generate}[m](obs, opts, sel, rng)
    sel.flush(m)
  qas = sorted(sel.kept, key=lambda q: MODALITIES.index(q.data_type))
  if lettered:
    letter(qas, seed, obs.scene)
  return qas, sel


def letter(qas: list[QA], seed: int, scene: str) -> None:
  """Letters the choices of one scene's questions (common.assign_letters), drawn from
  (seed, scene): a build letters the questions it keeps after the dataset-wide balance."""
  common.assign_letters(qas, common.scene_rng(seed, scene, "letters"))
