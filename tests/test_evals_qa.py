"""QA and math answer checks of the eval command (evals/qa.py) against reference implementations:
our EM equals verl's Search-R1 EM (`search_r1_like_qa_em.em_check`) on >= 200 (prediction, gold)
pairs built from real FanOutQA golds; F1, the "all" rule and math-verify next to the boxed check."""
import importlib.util
import random
import unicodedata

import pytest

from foresight_jax.data import real_sources as rs
from foresight_jax.evals import qa


def _verl_qa_em():
  """verl's module, loaded from its file: importing the `verl` package runs verl/__init__.py,
  which needs torch, ray and tensordict (verl is installed with --no-deps for this one file)."""
  spec = importlib.util.find_spec("verl")
  if spec is None:
    pytest.skip("verl is not installed (pip install --no-deps verl, see the Makefile)")
  path = f"{spec.submodule_search_locations[0]}/utils/reward_score/search_r1_like_qa_em.py"
  mspec = importlib.util.spec_from_file_location("_verl_search_r1_like_qa_em", path)
  mod = importlib.util.module_from_spec(mspec)
  mspec.loader.exec_module(mod)
  return mod


def _perturbations(g: str, other: str) -> list[str]:
  """Systematic variants of a gold: ones SQuAD normalisation forgives and ones it does not."""
  words = g.split()
  return [
      g, g.upper(), g.lower(), g.title(), f"The {g}", f"a {g}", f"an {g}.", f"{g}!", f'"{g}"',
      f"  {g}\n", "  ".join(words), ", ".join(words), g.replace(" ", "-"), f"{g} city",
      f"it is {g}", g + g[-1:], g[:-1], f"\u201c{g}\u201d",                      # curly quotes stay
      g.replace("e", "\u00e9"), unicodedata.normalize("NFKD", g.replace("e", "\u00e9")),
      "\u00a0".join(words), "\uff21" + g, f"the the {g}", other,
  ]


def test_em_matches_verl_search_r1_em_on_real_golds():
  verl = _verl_qa_em()
  tasks, _ = rs.load_fanoutqa_dev()
  golds = list(dict.fromkeys(a for t in tasks[:40] for a in t.answers if len(a) > 1))[:30]
  rng = random.Random(0)
  pairs = []
  for g in golds:
    other = rng.choice([x for x in golds if x != g])
    for p in _perturbations(g, other):
      pairs.append((p, [g]))
    pairs.append((g.lower(), [other, g]))  # several golds: any one suffices
  assert len(pairs) >= 200
  ours = [qa.em(p, gs) for p, gs in pairs]
  theirs = [float(verl.em_check(p, gs)) for p, gs in pairs]
  mismatches = [(p, gs, a, b) for (p, gs), a, b in zip(pairs, ours, theirs) if a != b]
  assert not mismatches, mismatches[:5]
  # both outcomes are well represented: the comparison is not all ones or all zeros
  assert sum(ours) >= 50 and len(ours) - sum(ours) >= 50, sum(ours)


def test_f1_is_squad_token_f1_max_over_golds():
  assert qa.f1("The Beatles!", ["beatles"]) == 1.0
  # pred "born in varnholm" vs gold "varnholm": precision 1/3, recall 1 -> 0.5
  assert qa.f1("born in Varnholm", ["Varnholm"]) == pytest.approx(0.5)
  assert qa.f1("born in Varnholm", ["Brelland", "in Varnholm"]) == pytest.approx(0.8)
  assert qa.f1("x", []) == 0.0
  assert qa.qa_scores(None, ["a"]) == {"em": 0.0, "f1": 0.0}


def test_all_match_needs_every_gold_string():
  golds = ["Uranus", "William Herschel", "Neptune", "Johann Galle"]
  full = qa.qa_scores("Uranus (William Herschel), Neptune (Johann Galle)", golds, "all")
  half = qa.qa_scores("Uranus and Neptune", golds, "all")
  assert full == {"em": 1.0, "f1": 1.0}
  assert half == {"em": 0.0, "f1": 0.5}
  # "any" would have called the half answer wrong by exact match, and "Uranus" alone right
  assert qa.qa_scores("Uranus", golds, "any")["em"] == 1.0


@pytest.mark.parametrize("pred,boxed,mv", [
    ("\\boxed{252}", 1.0, True),
    ("\\boxed{\\frac{504}{2}}", 0.0, True),   # symbolic equality: math-verify yes, integer check no
    ("\\boxed{7}", 0.0, False),
    ("252", 0.0, True),                       # no box: our check requires one, math-verify parses it
])
def test_math_checks_report_both_verdicts(pred, boxed, mv):
  pytest.importorskip("math_verify")
  out = qa.answer_checks("math", pred, ["252"])
  assert out["boxed_match"] == boxed and out["em"] == boxed and out["math_verify"] is mv


def test_math_verify_gives_no_verdict_where_it_cannot_parse():
  pytest.importorskip("math_verify")
  assert qa.math_verify_match("no number here at all", ["252"]) is None
  # a match with ANY gold, as em and f1 take the best gold
  assert qa.math_verify_match("\\boxed{252}", ["7", "252"]) is True
  assert qa.math_verify_match("\\boxed{252}", ["7", "8"]) is False
  assert qa.answer_checks("math", None, ["252"]) == {"em": 0.0, "f1": None, "boxed_match": 0.0,
                                                    "math_verify": False}


# ---------------------------------------------------------------------------------------------
# pass@k / mean@k (evals/metrics.py)


def test_pass_at_k_hand_values():
  from foresight_jax.evals.metrics import pass_at_k
  assert pass_at_k(8, 0, 8) == 0.0 and pass_at_k(8, 1, 8) == 1.0
  assert pass_at_k(4, 1, 1) == pytest.approx(0.25)          # one draw: c / n
  assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)       # 1 - C(3,2)/C(4,2)
  assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)      # 1 - C(3,3)/C(5,3)
  assert pass_at_k(10, 3, 4) == pytest.approx(1 - 35 / 210)   # 1 - C(7,4)/C(10,4)
  # large n: the binomial form overflows a float, the product form does not
  assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5)


def test_pass_at_k_equals_brute_force_enumeration():
  import itertools

  from foresight_jax.evals.metrics import pass_at_k
  for n in range(1, 8):
    for c in range(n + 1):
      samples = [1] * c + [0] * (n - c)
      for k in range(1, n + 1):
        subsets = list(itertools.combinations(samples, k))
        brute = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12), (n, c, k)


@pytest.mark.parametrize("n,c,k", [(3, 1, 4), (3, 4, 2), (3, -1, 2), (3, 1, 0), (3.5, 1, 1), (True, 1, 1)])
def test_pass_at_k_rejects_impossible_arguments(n, c, k):
  from foresight_jax.evals.metrics import pass_at_k
  with pytest.raises(ValueError, match="pass_at_k"):
    pass_at_k(n, c, k)


def test_mean_at_k_is_the_mean_sample_score():
  from foresight_jax.evals.metrics import mean_at_k
  assert mean_at_k([1, 0, 0, 1]) == 0.5 and mean_at_k([0.0]) == 0.0
  with pytest.raises(ValueError):
    mean_at_k([])


def test_free_text_f1_scores_prose_without_the_answer_tag():
  # SQuAD normalisation leaves 9 tokens ("the" twice dropped), one of them the gold:
  # precision 1/9, recall 1 -> F1 = 2 * (1/9) / (10/9) = 0.2
  text = "The predominant religion in the United States of America is Christianity."
  assert qa.f1(text, ["Christianity"]) == pytest.approx(0.2)
  assert qa.free_text_f1(text, ["Christianity"]) == qa.f1(text, ["Christianity"])
  # tags are not words: <answer> Paris </answer> scores as "Paris"
  assert qa.free_text_f1("<answer> Paris </answer>", ["Paris"]) == 1.0
  assert qa.free_text_f1("<think> no idea </think>", ["Paris"]) == 0.0
