"""Load an ml-collections config file (`path.py[:arg]`) and apply `key.sub=value` overrides.

The same convention as ml_collections' `config_flags` (`--config file.py:arg --config.key=value`),
usable from argparse sub-commands too. Unknown keys and ill-typed values are errors naming the key.
"""
from __future__ import annotations

import ast
import importlib.util
import os
from typing import Iterable

import ml_collections


def load(spec: str, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path!r} does not exist")
  module_spec = importlib.util.spec_from_file_location(f"_fj_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"config file {path!r} defines no get_config()")
  cfg = module.get_config(arg) if arg else module.get_config()
  for item in overrides:
    apply_override(cfg, item)
  return cfg


def apply_override(cfg: ml_collections.ConfigDict, item: str) -> None:
  key, sep, raw = item.partition("=")
  if not sep:
    raise ValueError(f"override {item!r} is not of the form key=value")
  *parents, leaf = key.split(".")
  node = cfg
  for i, name in enumerate(parents):
    if name not in node:
      raise KeyError(f"config has no key {'.'.join(parents[:i + 1])!r} (from override {item!r})")
    node = node[name]
  if leaf not in node:
    raise KeyError(f"config has no key {key!r}; known at this level: {sorted(node.keys())}")
  try:
    value = ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    value = raw  # bare strings: --set model.family=qwen2
  try:
    node[leaf] = value  # ConfigDict type-checks against the existing value
  except TypeError as e:
    raise TypeError(f"override {item!r}: {e}") from None
