"""Small files in each benchmark's published layout, written by the tests."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image


def png_bytes(seed: int, h: int = 28, w: int = 42) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def save_png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(seed))


def hf_image(seed: int) -> dict:
    """An image cell as HF datasets writes it to parquet."""
    return {"bytes": png_bytes(seed), "path": f"{seed}.png"}


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_tsv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0])
    lines = ["\t".join(cols)] + ["\t".join(str(r.get(c, "")) for c in cols) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def b64_png(seed: int) -> str:
    return base64.b64encode(png_bytes(seed)).decode()


@pytest.fixture
def files():
    """The writers above (conftest modules cannot be imported under --import-mode=importlib)."""
    return SimpleNamespace(png_bytes=png_bytes, save_png=save_png, hf_image=hf_image,
                           b64_png=b64_png, parquet=write_parquet, jsonl=write_jsonl,
                           tsv=write_tsv)
