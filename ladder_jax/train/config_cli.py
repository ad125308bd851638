"""Config files and command-line overrides.

A config is a Python file with ``get_config() -> ml_collections.ConfigDict``. Overrides come as
``--config.optim.lr=2e-5`` (or ``--config.optim.lr 2e-5``); the value is parsed to the type of
the field it replaces. Unknown keys stop with an error that lists the nearest existing keys.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import sys
from typing import Any, Sequence

import ml_collections


class ConfigError(ValueError):
    """A config file or override that cannot be applied (named key, clear reason)."""


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """Imports ``path`` and returns its ``get_config()`` (with ``arg`` when given, e.g. FILE:arg)."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    name = "_ladder_cfg_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # config files may import helpers that sit beside them (configs/_stage3b_common.py)
    here = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, here)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(here)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: no get_config() function")
    cfg = module.get_config(arg) if arg is not None else module.get_config()
    if not isinstance(cfg, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config() must return an ml_collections.ConfigDict")
    return cfg


def _all_keys(cfg: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in cfg.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, ml_collections.ConfigDict):
            keys.extend(_all_keys(v, full + "."))
    return keys


def _parse_value(text: str, old: Any, key: str) -> Any:
    """Parses ``text`` into the type of ``old`` (the value being overridden)."""
    try:
        if isinstance(old, bool):
            low = text.strip().lower()
            if low in ("true", "1", "yes"):
                return True
            if low in ("false", "0", "no"):
                return False
            raise ValueError(text)
        if isinstance(old, int):
            return int(float(text)) if "e" in text.lower() else int(text)
        if isinstance(old, float):
            return float(text)
        if isinstance(old, str):
            return text
        if isinstance(old, (tuple, list)):
            if old and all(isinstance(v, str) for v in old) and not text.lstrip().startswith(("(", "[", "'", '"')):
                return type(old)(v.strip() for v in text.split(",") if v.strip())  # a,b,c: names
            val = ast.literal_eval(text)
            if not isinstance(val, (tuple, list)):
                val = (val,)
            return type(old)(val)
        # None or another type: a Python literal when it parses, else the string itself.
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    except (ValueError, SyntaxError) as e:
        raise ConfigError(
            f"--config.{key}={text!r}: expected a value of type {type(old).__name__}"
        ) from e


def apply_override(cfg: ml_collections.ConfigDict, key: str, text: str) -> None:
    """Sets ``cfg.<key>`` (dotted) from the string ``text``; unknown keys raise ConfigError."""
    parts = key.split(".")
    node = cfg
    for i, part in enumerate(parts):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            near = difflib.get_close_matches(key, _all_keys(cfg), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join('--config.' + n for n in near)}?" if near else ""
            raise ConfigError(f"unknown config key --config.{key}{hint}")
        if i < len(parts) - 1:
            node = node[part]
    old = node[parts[-1]]
    if isinstance(old, ml_collections.ConfigDict):
        raise ConfigError(f"--config.{key} is a group of keys; set one of its fields instead")
    with node.unlocked():
        node[parts[-1]] = _parse_value(text, old, key)


def parse_args(argv: Sequence[str]) -> ml_collections.ConfigDict:
    """``--config FILE[:arg] [--config.a.b=v | --config.a.b v]...`` -> the final ConfigDict."""
    argv = list(argv)
    path, overrides, i = None, [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--config" or a.startswith("--config="):
            if a == "--config":
                if i + 1 >= len(argv):
                    raise ConfigError("--config needs a file")
                path, i = argv[i + 1], i + 2
            else:
                path, i = a.split("=", 1)[1], i + 1
        elif a.startswith("--config."):
            if "=" in a:
                k, v = a[len("--config."):].split("=", 1)
                i += 1
            else:
                if i + 1 >= len(argv):
                    raise ConfigError(f"{a} needs a value")
                k, v, i = a[len("--config."):], argv[i + 1], i + 2
            overrides.append((k, v))
        else:
            raise ConfigError(f"unexpected argument {a!r}; usage: --config FILE [--config.key=value ...]")
    if path is None:
        raise ConfigError("missing --config FILE (e.g. --config configs/ladder_tiny.py)")
    arg = None
    if ":" in path and not os.path.isfile(path):
        path, arg = path.split(":", 1)
    cfg = load_config_file(path, arg)
    for k, v in overrides:
        apply_override(cfg, k, v)
    return cfg
