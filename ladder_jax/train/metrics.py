"""Training metrics: JSONL file, TensorBoard (tensorboardX), progress bar, loss-curve PNG.

Only process 0 writes; every record is one JSON object per line with ``step`` and the scalars.
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import jax


class MetricsLogger:
    def __init__(self, workdir: str, *, total_steps: int, jsonl: bool = True, tensorboard: bool = True,
                 progress_bar: bool = True, initial_step: int = 0, prefix: str = ""):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.prefix = prefix
        self._file = self._tb = self._bar = None
        if not self.active:
            return
        os.makedirs(workdir, exist_ok=True)
        if jsonl:
            self._file = open(self.path, "a")
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
        if progress_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=initial_step, desc=prefix or "train",
                             dynamic_ncols=True, mininterval=1.0)

    def log(self, step: int, scalars: Mapping[str, float], kind: str = "train") -> None:
        if not self.active:
            return
        rec = {"step": int(step), "kind": kind, **{k: float(v) for k, v in scalars.items()}}
        if self.prefix:
            rec["stage"] = self.prefix
        if self._file:
            self._file.write(json.dumps(rec) + "\n")
            self._file.flush()
        if self._tb:
            for k, v in scalars.items():
                self._tb.add_scalar(f"{kind}/{k}", float(v), int(step))
        if self._bar is not None and kind == "train":
            self._bar.n = int(step)
            shown = {k: f"{scalars[k]:.4g}" for k in ("loss", "token_accuracy", "learning_rate", "mfu")
                     if k in scalars}
            self._bar.set_postfix(shown, refresh=False)
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb:
            self._tb.close()
        if self._file:
            self._file.close()


def read_jsonl(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_loss_curve(jsonl_path: str, png_path: str, title: str = "SFT loss") -> str:
    """Loss against step from metrics.jsonl (one line per stage when several); returns png_path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in read_jsonl(jsonl_path) if r.get("kind") == "train" and "loss" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    stages: dict[str, list[tuple[int, float]]] = {}
    for r in recs:
        stages.setdefault(r.get("stage", "train"), []).append((r["step"], r["loss"]))
    offset = 0
    for name, pts in stages.items():
        pts.sort()
        # later records of a resumed run replace earlier ones at the same step
        by_step = dict(pts)
        xs = sorted(by_step)
        ax.plot([x + offset for x in xs], [by_step[x] for x in xs], label=name)
        offset += max(xs) if xs else 0
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats / target token)")
    ax.set_title(title)
    if len(stages) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return png_path
