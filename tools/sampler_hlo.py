"""Writes the optimised HLO of the sampler's prefill and decode (tiny preset, greedy and top-p
sampling) with source locations stripped, so two trees can be compared byte for byte:

    (cd OLD_TREE && python tools/sampler_hlo.py /tmp/old.txt)
    (cd NEW_TREE && python tools/sampler_hlo.py /tmp/new.txt) && cmp /tmp/old.txt /tmp/new.txt

Used to show that a sampler option that is off compiles to the same code as before it existed.
"""

from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.getcwd())  # the tree this runs in, installed or not


def main(out_path: str) -> None:
    import flax.nnx as nnx
    import jax.numpy as jnp
    import numpy as np

    from ladder_jax.model import Qwen25VL, tiny
    from ladder_jax.processing.prompts import EncodedPrompt
    from ladder_jax.sampling import Sampler, SamplingConfig, collate_prompts

    model = Qwen25VL(tiny(), rngs=nnx.Rngs(0))
    ids = np.arange(100, 120, dtype=np.int32)
    prompt = EncodedPrompt(ids, None, None, None, None, None, np.broadcast_to(np.arange(20, dtype=np.int32),
                                                                              (3, 20)).copy(), 0)
    texts = []
    for temperature in (0.0, 0.7):
        s = Sampler(model, SamplingConfig(max_new_tokens=8, temperature=temperature, top_p=0.9))
        args = (s.state, s._place(collate_prompts([prompt], model.config, pad_id=model.config.pad_token_id)), jnp.uint32(0),
                jnp.int32(0))
        loop = s._prefill(*args, num_samples=1, cache_len=40)
        for lowered in (s._prefill.lower(*args, num_samples=1, cache_len=40), s._decode.lower(s.state, loop)):
            text = re.sub(r", metadata=\{[^}]*\}", "", lowered.compile().as_text())
            lines = [re.sub(r"stack_frame_id=\d+", "", line) for line in text.splitlines()
                     if "file_name_id" not in line and not re.match(r'\d+ "/', line)]
            texts.append("\n".join(lines))
    with open(out_path, "w") as f:
        f.write("\n=====\n".join(texts))
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main(sys.argv[1])
