"""The SFT pipeline: tokenization with the chat template, the loss mask, vision inputs in
placeholder order, positions, deterministic shuffling and sharding, resumable iterators,
bucketing bounds on the number of compiled shapes, and the promised errors for bad rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ladder_jax.data import batching, formats, pipeline, sft_examples
from ladder_jax.processing import positions
from ladder_jax.processing.image import process_image
from ladder_jax.processing.video import process_video

IMAGE_PAD, VIDEO_PAD, IM_END = 151655, 151656, 151645
PIX = dict(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64)
SEQ, PATCH = (128, 256, 512, 1024), (256, 512, 1024, 2048, 4096)
FILES = {"grounding": "spld_grounding_data.jsonl", "spatial": "spld_spatial_data.jsonl",
         "coldstart": "coldstart.jsonl"}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def make_pipe(root, tokenizer_dir, kind="spatial", jsonl=None, **over):
    seed = over.pop("seed", 0)
    shard = dict(shard_index=over.pop("shard_index", 0), shard_count=over.pop("shard_count", 1),
                 shard_block=over.pop("shard_block", 1))
    data = {"kind": kind, "jsonl": str(jsonl or root / FILES[kind]), "seq_buckets": SEQ,
            "patch_buckets": PATCH, **PIX, **over}
    return pipeline.build_pipeline(data, seed=seed, tokenizer_dir=tokenizer_dir, **shard)


@pytest.fixture(scope="module")
def spatial(dataset, tokenizer_dir):
    return make_pipe(dataset, tokenizer_dir, "spatial", shuffle=False)


@pytest.fixture(scope="module")
def spatial_features(spatial):
    return list(pipeline.GrainSource(spatial))


# ----------------------------------------------------------------------------- tokenization


@pytest.mark.parametrize("kind", ["grounding", "spatial", "coldstart"])
def test_loss_mask_covers_exactly_the_assistant_tokens(dataset, tokenizer_dir, kind):
    pipe = make_pipe(dataset, tokenizer_dir, kind, shuffle=False)
    tok = pipe.featurizer.tokenizer
    feats = [pipe.featurizer(r) for r in pipe.rows[:4]]
    batch = batching.collate(feats, seq_buckets=SEQ, patch_buckets=PATCH, pad_id=151643)
    for b, (row, f) in enumerate(zip(pipe.rows, feats)):
        ex = pipe.featurizer.example(row)
        t = np.flatnonzero(batch["loss_mask"][b])
        # one contiguous run whose next tokens are the target and <|im_end|>, then "\n" and padding
        assert np.array_equal(t, np.arange(t[0], t[-1] + 1))
        ids = batch["input_ids"][b]
        assert tok.decode(batch["target_ids"][b, t]) == ex.target + "<|im_end|>"
        assert np.array_equal(batch["target_ids"][b, t], ids[t + 1])
        assert ids[t[-1] + 1] == IM_END and tok.decode(ids[t[-1] + 2:f.length]) == "\n"
        assert tok.decode(ids[:t[0] + 1]).endswith("<|im_start|>assistant\n")
        assert batch["loss_mask"][b, f.length - 1:].sum() == 0


def test_tokens_equal_the_whole_conversation_rendered_and_tokenized_at_once(dataset, tokenizer_dir,
                                                                           spatial, spatial_features):
    """Independent route: the chat template renders the full conversation (assistant turn
    included), pad placeholders are expanded in the text as the HF processor does, and the
    tokenizer encodes it in one go."""
    tok = spatial.featurizer.tokenizer
    for row, f in zip(spatial.rows[:6], spatial_features[:6]):
        ex = spatial.featurizer.example(row)
        content = [{"type": v.kind} for v in ex.visuals] + [{"type": "text", "text": ex.user_text}]
        text = tok.apply_chat_template(
            [{"role": "system", "content": "You are a helpful assistant."},
             {"role": "user", "content": content}, {"role": "assistant", "content": ex.target}],
            tokenize=False)
        for g in f.grid_thw:  # one pad per visual item, in order, expanded to t*h*w/4
            pad = "<|video_pad|>" if row.record.data_type == "video" else "<|image_pad|>"
            text = text.replace(pad, "<|placeholder|>" * (int(np.prod(g)) // 4), 1)
        text = text.replace("<|placeholder|>", pad)
        assert tok.encode(text, add_special_tokens=False) == f.input_ids.tolist()


def test_loss_on_all_is_the_whole_conversation_minus_vision_pads(dataset, tokenizer_dir):
    pipe = make_pipe(dataset, tokenizer_dir, "spatial", shuffle=False, loss_on="all")
    f = pipe.featurizer(pipe.rows[2])  # a video row
    assert (f.input_ids == VIDEO_PAD).any()
    batch = batching.collate([f], seq_buckets=SEQ, patch_buckets=PATCH, pad_id=151643)
    n = f.length
    expect = np.zeros(batch["loss_mask"].shape[1], np.float32)
    expect[:n - 1] = ~np.isin(f.input_ids[1:], [IMAGE_PAD, VIDEO_PAD])
    assert np.array_equal(batch["loss_mask"][0], expect)


def test_vision_inputs_in_placeholder_order(spatial, spatial_features):
    cfg = spatial.featurizer.image_cfg
    for row, f in zip(spatial.rows[:6], spatial_features[:6]):
        rec = row.record
        if rec.data_type == "video":
            vid = process_video(list(rec.image_paths), cfg, num_frames=16)
            want_pv, want_grid, pad = vid.pixel_values, vid.grid_thw[None], VIDEO_PAD
        else:
            outs = [process_image(p, cfg) for p in rec.image_paths]
            want_pv = np.concatenate([o[0] for o in outs])
            want_grid, pad = np.stack([o[1] for o in outs]), IMAGE_PAD
        np.testing.assert_array_equal(f.pixel_values, want_pv)
        np.testing.assert_array_equal(f.grid_thw, want_grid)
        assert (f.input_ids == pad).sum() == want_grid.prod(axis=1).sum() // 4 == len(want_pv) // 4
    kinds = {r.record.data_type for r in spatial.rows[:6]}
    assert kinds == {"single_image", "multi_view", "video"}


def test_collated_batch_positions_and_patches(spatial, spatial_features):
    feats = spatial_features[:5]
    batch = batching.collate(feats, seq_buckets=SEQ, patch_buckets=PATCH, pad_id=151643)
    B, L = batch["input_ids"].shape
    assert (B, L) == (5, batching.pick_bucket(max(f.length for f in feats), SEQ, "len"))
    assert batch["position_ids"].shape == (3, B, L) and batch["position_ids"].dtype == np.int32
    assert batch["loss_mask"].dtype == np.float32 and batch["attention_mask"].dtype == np.int32
    # positions of the padded batch as one call of get_rope_index over it
    grids = [(r.record.data_type, f.grid_thw) for r, f in zip(spatial.rows, feats)]
    img = np.concatenate([g for k, g in grids if k != "video"] or [np.zeros((0, 3), int)])
    vid = np.concatenate([g for k, g in grids if k == "video"] or [np.zeros((0, 3), int)])
    want, _ = positions.get_rope_index(batch["input_ids"], image_grid_thw=img, video_grid_thw=vid,
                                       attention_mask=batch["attention_mask"])
    m = batch["attention_mask"].astype(bool)
    np.testing.assert_array_equal(batch["position_ids"][:, m], want[:, m])
    # patches: concatenated in example order, zero rows up to the bucket
    n = sum(f.num_patches for f in feats)
    assert int(batch["num_patches"]) == n and batch["pixel_values"].shape[0] == batching.pick_bucket(n, PATCH, "p")
    np.testing.assert_array_equal(batch["pixel_values"][:n], np.concatenate([f.pixel_values for f in feats]))
    assert not batch["pixel_values"][n:].any()
    assert sum(int(np.prod(g)) for g in batch["grid_thw"]) == n


# ----------------------------------------------------------------------------- order and state


def _order(src, n):
    return [next(src).source for _ in range(n)]


def test_shuffle_is_deterministic_by_seed_and_reshuffles_each_epoch(dataset, tokenizer_dir):
    kw = dict(kind="coldstart", num_epochs=3)
    a = _order(pipeline.GrainSource(make_pipe(dataset, tokenizer_dir, seed=7, **kw)), 12)
    b = _order(pipeline.GrainSource(make_pipe(dataset, tokenizer_dir, seed=7, **kw)), 12)
    c = _order(pipeline.GrainSource(make_pipe(dataset, tokenizer_dir, seed=8, **kw)), 12)
    assert a == b and a != c
    epochs = [a[i:i + 4] for i in range(0, 12, 4)]
    assert all(sorted(e) == sorted(epochs[0]) for e in epochs)  # each epoch is a permutation
    assert len({tuple(e) for e in epochs}) > 1


def test_process_shards_together_equal_one_process(dataset, tokenizer_dir):
    """2 processes with 3 examples each per step see exactly the 6 examples one process takes."""
    one = _order(pipeline.GrainSource(make_pipe(dataset, tokenizer_dir, "spatial", seed=3)), 12)
    shards = [pipeline.GrainSource(make_pipe(dataset, tokenizer_dir, "spatial", seed=3,
                                               shard_index=i, shard_count=2, shard_block=3))
              for i in range(2)]
    assert len(shards[0]) == len(shards[1]) == 12
    per_step = [_order(shards[0], 3) + _order(shards[1], 3) for _ in range(2)]
    assert per_step[0] + per_step[1] == one


def test_iterator_state_resumes_at_the_next_example(dataset, tokenizer_dir):
    src = pipeline.GrainSource(make_pipe(dataset, tokenizer_dir, "spatial", seed=1, num_epochs=0))
    _order(src, 5)
    state = json.loads(json.dumps(src.get_state()))  # saved as JSON by the trainer
    want = [next(src) for _ in range(30)]  # crosses into the second epoch
    fresh = pipeline.GrainSource(make_pipe(dataset, tokenizer_dir, "spatial", seed=1, num_epochs=0))
    fresh.set_state(state)
    got = [next(fresh) for _ in range(30)]
    assert [f.source for f in got] == [f.source for f in want]
    np.testing.assert_array_equal(got[-1].input_ids, want[-1].input_ids)


# ----------------------------------------------------------------------------- bucketing


def test_bucketing_bounds_the_compiled_shapes(dataset, tokenizer_dir):
    """Over two epochs of grounding + spatial batches, a jitted step traces once per distinct
    (L, P) and never more than len(seq_buckets) * len(patch_buckets) times, while the raw
    (longest length, total patches) pairs are many more."""
    seq, patch = (128, 256, 512), (512, 1024, 2048)
    traces = []

    @jax.jit
    def step(b):
        traces.append(b["input_ids"].shape + b["pixel_values"].shape[:1])
        return jnp.sum(b["loss_mask"] * b["input_ids"]) + jnp.sum(b["pixel_values"])

    raw, shapes = set(), set()
    for kind in ("grounding", "spatial"):
        pipe = make_pipe(dataset, tokenizer_dir, kind, seed=0, num_epochs=2,
                         seq_buckets=seq, patch_buckets=patch)
        for batch in pipe.batch_dataset(3, seq_buckets=seq, patch_buckets=patch):
            dev = {k: batch[k] for k in ("input_ids", "loss_mask", "pixel_values")}
            step(dev)
            shapes.add(batching.batch_shape_key(batch))
            raw.add((int(batch["attention_mask"].sum(1).max()), int(batch["num_patches"])))
    assert len(traces) == len(shapes) <= len(seq) * len(patch)
    assert all(L in seq and P in patch for _, L, P in shapes)
    assert len(raw) > 3 * len(shapes)


def test_bucket_specs():
    assert batching.parse_buckets("pow2:100:1000", "s") == (128, 256, 512, 1024)
    assert batching.parse_buckets("step:256:700", "s") == (256, 512, 768)
    assert batching.parse_buckets([512, 128], "s") == (128, 512)
    with pytest.raises(ValueError, match="data.seq_buckets"):
        batching.parse_buckets("cube:1:2", "data.seq_buckets")
    with pytest.raises(batching.BucketOverflowError, match="exceeds the largest bucket 512"):
        batching.pick_bucket(513, (128, 512), "sequence length")


# ----------------------------------------------------------------------------- bad rows


@pytest.fixture()
def bad_dir(dataset, tmp_path):
    shutil.copytree(dataset / "images", tmp_path / "images")
    return tmp_path


def _spatial_rows(dataset):
    return [json.loads(line) for line in open(dataset / FILES["spatial"])][:6]


def test_malformed_row_names_file_line_and_field(dataset, tokenizer_dir, bad_dir):
    rows = _spatial_rows(dataset)
    rows = [r for r in rows if r["data_type"] != "video"]
    del rows[2]["question_type"]
    path = write_jsonl(bad_dir / "bad.jsonl", rows)
    with pytest.raises(formats.FormatError, match=r"bad\.jsonl, line 3, field 'question_type': missing"):
        make_pipe(bad_dir, tokenizer_dir, "spatial", jsonl=path)


def test_missing_image_and_escaping_path_are_errors_or_skipped(dataset, tokenizer_dir, bad_dir):
    rows = [r for r in _spatial_rows(dataset) if r["data_type"] != "video"]
    rows[1]["image"] = ["images/nope.jpg"]
    rows[3]["image"] = ["../outside.jpg"]
    path = write_jsonl(bad_dir / "bad.jsonl", rows + ["{not json"])
    with pytest.raises(formats.FormatError,
                       match=r"bad\.jsonl, line 2, field 'image\[0\]': file not found"):
        make_pipe(bad_dir, tokenizer_dir, "spatial", jsonl=path)
    pipe = make_pipe(bad_dir, tokenizer_dir, "spatial", jsonl=path, on_bad_row="skip", shuffle=False)
    assert pipe.stats.read == 3 and len(pipe.rows) == len(rows) - 2
    assert any("line 4, field 'image[0]'" in e and "outside the dataset root" in e
               for e in pipe.stats.errors)
    assert [r.source.rsplit(" ", 1)[1] for r in pipe.rows] == ["1", "3"] + [str(i) for i in range(5, len(rows) + 1)]


def test_unreadable_image_fails_at_featurize_time_or_is_skipped(dataset, tokenizer_dir, bad_dir):
    rows = [r for r in _spatial_rows(dataset) if r["data_type"] == "single_image"][:2]
    (bad_dir / "images" / "broken.jpg").write_bytes(b"not an image")
    rows.insert(1, {**rows[0], "image": ["images/broken.jpg"]})
    path = write_jsonl(bad_dir / "bad.jsonl", rows)
    src = pipeline.GrainSource(make_pipe(bad_dir, tokenizer_dir, "spatial", jsonl=path, shuffle=False))
    next(src)
    with pytest.raises(sft_examples.ExampleError, match=r"bad\.jsonl, line 2, field 'image\[0\]'"):
        next(src)
    src = pipeline.GrainSource(make_pipe(bad_dir, tokenizer_dir, "spatial", jsonl=path,
                                           shuffle=False, on_bad_row="skip"))
    assert [f.source[-6:] for f in src] == ["line 1", "line 3"]
    assert src.stats.featurize == 1 and src.stats.total == 1


def test_example_longer_than_the_largest_bucket(dataset, tokenizer_dir):
    pipe = make_pipe(dataset, tokenizer_dir, "grounding", seq_buckets=(64,), shuffle=False)
    with pytest.raises(batching.BucketOverflowError,
                       match=r"spld_grounding_data\.jsonl, line 1: \d+ tokens exceed the largest sequence bucket 64"):
        next(pipeline.GrainSource(pipe))


def test_trainer_config_section(dataset, tokenizer_dir):
    """The trainer's ConfigDict (ladder_jax.train.defaults) drives the pipeline."""
    from ladder_jax.train.defaults import base_config

    cfg = base_config()
    cfg.seed = 5
    cfg.model.tokenizer = str(tokenizer_dir)
    cfg.data.kind = "grounding"
    cfg.data.jsonl = str(dataset / FILES["grounding"])
    cfg.data.min_pixels, cfg.data.max_pixels = PIX["min_pixels"], PIX["max_pixels"]
    src = pipeline.example_source(cfg, shard_index=0, shard_count=1)
    assert len(src) == 24
    f = next(src)
    assert isinstance(f, batching.Features) and f.target_mask.any()
    assert f.source.endswith(_order(pipeline.GrainSource(make_pipe(dataset, tokenizer_dir, "grounding", seed=5)), 1)[0][-8:])


def test_the_models_spatial_stride_reaches_the_training_positions(dataset, tokenizer_dir):
    """The trainer's source (train.sources.pipeline_source) builds positions with the model's rule."""
    from ladder_jax.model import config as mc
    from ladder_jax.train.defaults import base_config
    from ladder_jax.train.sources import pipeline_source

    cfg = base_config()
    cfg.model.tokenizer = str(tokenizer_dir)
    cfg.data.kind, cfg.data.jsonl, cfg.data.shuffle = "spatial", str(dataset / FILES["spatial"]), False
    cfg.data.min_pixels, cfg.data.max_pixels = PIX["min_pixels"], PIX["max_pixels"]
    cfg.data.seq_buckets, cfg.data.patch_buckets = "pow2:128:1024", "pow2:256:4096"
    cfg.train.global_batch_size = 1
    spread = next(pipeline_source(cfg, mc.tiny(mrope_spatial_stride=3), shard_index=0, shard_count=1))
    plain = next(pipeline_source(cfg, mc.tiny(), shard_index=0, shard_count=1))
    assert (spread.grid_thw[:, 1:] > 2).all()  # more than one merged row and column: the stride shows
    want, _ = positions.get_rope_index(spread.input_ids[None], image_grid_thw=spread.grid_thw,
                                       position_rule=positions.PositionRule(spatial_stride=3))
    np.testing.assert_array_equal(spread.position_ids, want[:, 0])
    np.testing.assert_array_equal(spread.input_ids, plain.input_ids)
    assert not np.array_equal(spread.position_ids, plain.position_ids)


def test_read_threads_keep_the_order_and_the_state(dataset, tokenizer_dir):
    serial = pipeline.GrainSource(make_pipe(dataset, tokenizer_dir, "spatial", seed=2))
    threaded = pipeline.GrainSource(make_pipe(dataset, tokenizer_dir, "spatial", seed=2,
                                                worker_count=2))
    assert _order(threaded, 7) == _order(serial, 7)
    state = threaded.get_state()
    want = _order(threaded, 5)
    threaded.set_state(state)
    assert _order(threaded, 5) == want == _order(serial, 5)


def test_pad_tokens_that_do_not_match_the_features_name_the_row(dataset, tokenizer_dir, bad_dir):
    """A literal <|image_pad|> in the answer would give the device's feature gather one token too
    many: it is an error naming file, line and field (or a skipped row)."""
    rows = [json.loads(line) for line in open(dataset / FILES["coldstart"])][:3]
    rows[1]["solution"] = "<think>see <|image_pad|></think><answer>2</answer>"
    path = write_jsonl(bad_dir / "bad.jsonl", rows)
    pipe = make_pipe(bad_dir, tokenizer_dir, "coldstart", jsonl=path, shuffle=False)
    pipe.featurizer(pipe.rows[0])
    with pytest.raises(sft_examples.ExampleError,
                       match=r"bad\.jsonl, line 2, field 'text': (\d+) vision pad token\(s\) in the text, but the 1 "
                             r"grid\(s\) .* give (\d+) features"):
        pipe.featurizer(pipe.rows[1])
