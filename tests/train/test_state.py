"""Loading into the sharded train state: init_from and resume build one state, never a random
one beside it (at 3B two states are ~84 GiB before step 1). Peak live device bytes are sampled
while the load runs."""

import threading
import time

import jax
import numpy as np

from ladder_jax.checkpoint import init_from as init_from_lib, model_dir as model_dir_lib, store as store_lib
from ladder_jax.model.qwen25_vl import Qwen25VL
from ladder_jax.train import sft, trainer as trainer_lib

from tests.train.test_sft_step import base_cfg, small_arch


class LivePeak:
    """Largest total of live jax array bytes seen while the block runs (sampled every ~0.2 ms;
    a missed sample can only make the figure smaller, never larger)."""

    def __enter__(self):
        self._before = {id(a): a for a in jax.live_arrays()}  # held, so their ids stay unique
        self.peak = 0
        self._stop = False
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _live(self) -> int:
        """Bytes of the arrays created inside the block that are alive now."""
        return sum(a.nbytes for a in jax.live_arrays() if id(a) not in self._before and not a.is_deleted())

    def _poll(self):
        while not self._stop:
            self.peak = max(self.peak, self._live())
            time.sleep(0.0002)

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, self._live())
        self._before = None


def state_bytes(trainer) -> int:
    return sum(int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(trainer.plan.abstract_state()))


def test_init_from_builds_one_state(tmp_path):
    import flax.nnx as nnx

    arch = small_arch()
    cfg = base_cfg(tmp_path / "run", global_batch_size=2, num_steps=1)
    model_dir = tmp_path / "model"
    model_dir_lib.save_checkpoint(Qwen25VL(trainer_lib.model_config(cfg, arch), rngs=nnx.Rngs(7)), str(model_dir))
    with LivePeak() as lp:
        tr = sft.Trainer(cfg, 1, init_from_lib.model_config_for(str(model_dir)), random_init=False)
        assert tr.state is None
        tr.load_init_from(str(model_dir))
        jax.block_until_ready(tr.state)
    one = state_bytes(tr)
    # one state (params + AdamW moments + counters) and nothing of a second one
    assert one <= lp.peak < 1.25 * one, (lp.peak, one)
    assert int(tr.state.step) == 0


def test_resume_restores_into_one_state(tmp_path):
    arch = small_arch()
    cfg = base_cfg(tmp_path, global_batch_size=2, num_steps=1)
    tr = sft.Trainer(cfg, 1, arch)
    ckpt = store_lib.Store(str(tmp_path / "ckpt"), 1, async_save=False)
    ckpt.save(0, tr.state, {"source": {}}, {}, force=True)
    want = jax.tree.map(np.asarray, tr.state.params)
    del tr
    with LivePeak() as lp:
        tr = sft.Trainer(cfg, 1, arch, random_init=False)
        tr.restore(ckpt, 0)
        jax.block_until_ready(tr.state)
    one = state_bytes(tr)
    assert one <= lp.peak < 1.25 * one, (lp.peak, one)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(tr.state.params)):
        np.testing.assert_array_equal(a, np.asarray(b))
    ckpt.close()
