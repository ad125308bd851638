"""Every command line turns the project's input errors into one message and exit code 1, with no
traceback; --debug keeps the traceback (data_gen/cli.py, shared by ladder_jax's entry points)."""

import subprocess
import sys
from pathlib import Path

import pytest

from data_gen.cli import reports_errors

REPO = Path(__file__).resolve().parents[2]


def test_reports_errors_prints_one_line_and_debug_reraises(capsys):
  @reports_errors
  def main(argv):
    assert "--debug" not in argv  # the flag is the wrapper's, not the command's
    raise ValueError(f"rows.jsonl, line 3, field 'answer': bad ({argv[0]})")

  assert main(["x"]) == 1
  assert capsys.readouterr().err == "error: rows.jsonl, line 3, field 'answer': bad (x)\n"
  with pytest.raises(ValueError, match="line 3"):
    main(["x", "--debug"])

  @reports_errors
  def buggy(argv):
    raise KeyError("a bug, not bad input")

  with pytest.raises(KeyError):  # anything else keeps its traceback
    buggy([])


def _cases(tmp: Path) -> dict[str, tuple[list[str], str]]:
  """CLI -> (argv after `python -m`, what the one error line must name)."""
  bad_jsonl = tmp / "bad.jsonl"
  bad_jsonl.write_text('{"id": 1, "conversations": [}\n')
  cfg = tmp / "cfg.py"
  cfg.write_text("from ladder_jax.train import defaults\n\n\ndef get_config():\n"
                 "    c = defaults.base_config()\n    c.model.preset = 'tiny'\n    c.data.kind = 'spatial'\n"
                 f"    c.data.jsonl = {str(bad_jsonl)!r}\n    c.data.image_root = {str(tmp)!r}\n"
                 f"    c.workdir = {str(tmp / 'run')!r}\n    return c\n")
  model = tmp / "model"
  model.mkdir()
  (model / "ladder_config.json").write_text("{")
  return {
      "train": (["ladder_jax.train", "--config", str(cfg)], "bad.jsonl, line 1, field '<json>'"),
      "aot": (["ladder_jax.aot", "--config", str(cfg), "--target", "h100x0"], "h100x0"),
      "eval": (["ladder_jax.eval", "score", "--benchmark", str(tmp / "nope.parquet"), "--predictions",
                str(bad_jsonl), "--out", str(tmp / "o.json")], "nope.parquet"),
      "generate": (["ladder_jax.generate", "--model", str(model), "--prompt", "x"], "ladder_config.json"),
      "convert": (["ladder_jax.convert", "jax-to-hf", "--ckpt", str(model), "--out", str(tmp / "hf")],
                  "ladder_config.json"),
      "coldstart": (["ladder_jax.coldstart", "--model", str(model), "--data", str(bad_jsonl), "--out",
                     str(tmp / "o.jsonl")], "bad.jsonl"),
      "data_gen": (["data_gen", "build", "--scenes", str(tmp / "nowhere"), "--out", str(tmp / "d")],
                   "nowhere"),
  }


@pytest.mark.parametrize("cli", ["train", "aot", "eval", "generate", "convert", "coldstart", "data_gen"])
def test_cli_input_error_is_one_line_exit_1_and_debug_shows_the_traceback(cli, tmp_path):
  argv, names = _cases(tmp_path)[cli]
  run = lambda extra: subprocess.run([sys.executable, "-m", *argv, *extra], capture_output=True, text=True,
                                     cwd=REPO, timeout=120)
  r = run([])
  assert r.returncode == 1, r.stderr
  assert "Traceback" not in r.stderr
  errors = [l for l in r.stderr.splitlines() if l.startswith("error: ")]
  assert len(errors) == 1 and names in errors[0], r.stderr
  d = run(["--debug"])
  assert d.returncode == 1 and "Traceback (most recent call last)" in d.stderr, d.stderr
