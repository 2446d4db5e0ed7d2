"""BERT-family sentence encoder in JAX: all-MiniLM-L6-v2 and E5 (e5-base-v2) from local checkpoints.

`embed(params, cfg, ids, mask)` is a pure function over a params pytree (jit- and shard-friendly,
usable inside a larger jitted step); `encode(encoder, texts)` is the host wrapper: tokenize with
`tokenizers`, sort by length, cut batches by a padded-token budget, pad rows to powers of two and
columns to `LENGTH_BUCKETS` (few compiles, little padding), run the jitted function, restore order.

What a checkpoint directory decides (mirroring sentence-transformers and Search-R1's encoder):
- weights: `*.safetensors` of a `BertModel` (an optional `bert.` prefix is stripped; pooler and
  heads are ignored); architecture from `config.json`.
- pooling: `1_Pooling/config.json` when the dir is a sentence-transformers model, else mean
  pooling (Search-R1 uses mean for E5); L2 normalisation when `modules.json` lists `Normalize`, or
  when there is no `modules.json` (Search-R1 normalises every encoder but DPR).
- max length: `sentence_bert_config.json`'s `max_seq_length` (256 for MiniLM), else 256
  (Search-R1's query max length), capped by the position table.
- prefixes: E5 was trained with "query: " / "passage: " in front of texts; applied when the
  directory (or its `_name_or_path`) names an e5 model, as Search-R1 does, or when passed.
"""
from __future__ import annotations

import glob
import json
import math
import os
import struct
from dataclasses import dataclass
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512)
_ACTS = {"gelu": lambda x: jax.nn.gelu(x, approximate=False),  # HF "gelu" is the exact erf form
         "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
         "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
         "relu": jax.nn.relu, "silu": jax.nn.silu}
_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16, "F64": np.float64,
              "I64": np.int64, "I32": np.int32}


@dataclass(frozen=True)
class EncoderConfig:
  """Static (hashable) description: the jit cache key together with the input shapes."""
  vocab_size: int
  hidden: int
  layers: int
  heads: int
  intermediate: int
  max_positions: int
  type_vocab: int = 2
  eps: float = 1e-12
  act: str = "gelu"
  pooling: str = "mean"          # "mean" | "cls"
  normalize: bool = True
  max_length: int = 256
  query_prefix: str = ""
  passage_prefix: str = ""
  pad_id: int = 0
  compute_dtype: str = "float32"  # matmuls/attention; LayerNorm, softmax and pooling stay fp32

  def __post_init__(self):
    if self.hidden % self.heads:
      raise ValueError(f"hidden {self.hidden} is not divisible by {self.heads} heads")
    if self.pooling not in ("mean", "cls"):
      raise ValueError(f"pooling must be 'mean' or 'cls', got {self.pooling!r}")
    if self.act not in _ACTS:
      raise ValueError(f"unsupported hidden_act {self.act!r} (supported: {sorted(_ACTS)})")


@dataclass(frozen=True)
class Encoder:
  cfg: EncoderConfig
  params: Any      # pytree of jax arrays, see `_params_from_hf`
  tokenizer: Any   # tokenizers.Tokenizer with truncation at cfg.max_length, no padding


# ------------------------------------------------------------------------------------ the model
def _layer_norm(x, g, b, eps):
  x = x.astype(jnp.float32)
  mu = x.mean(-1, keepdims=True)
  var = jnp.square(x - mu).mean(-1, keepdims=True)
  return (x - mu) * jax.lax.rsqrt(var + eps) * g + b


def forward(params, cfg: EncoderConfig, ids: jax.Array, mask: jax.Array) -> jax.Array:
  """Last hidden states [B, T, hidden] (fp32) of a post-LN BERT; token types are all 0."""
  dt = jnp.dtype(cfg.compute_dtype)
  B, T = ids.shape
  e = params["embed"]
  x = e["word"][ids] + e["pos"][None, :T] + e["type"][0]
  x = _layer_norm(x, e["ln_g"], e["ln_b"], cfg.eps)
  # additive key mask; finite so a fully padded (batch-filler) row softmaxes to uniform, not NaN
  bias = jnp.where(mask[:, None, None, :] > 0, 0.0, -1e30).astype(jnp.float32)
  H, dh = cfg.heads, cfg.hidden // cfg.heads
  act = _ACTS[cfg.act]

  def dense(h, w, b):
    return jnp.einsum("btd,df->btf", h.astype(dt), w.astype(dt)).astype(jnp.float32) + b

  def layer(x, p):
    # head-major [B, H, T, dh]: XLA:CPU runs these batched matmuls ~8x faster than with the head
    # axis in the middle ([B, T, H, dh]), where it falls back to a slow transposing dot
    q, k, v = (dense(x, p[w], p[bn]).reshape(B, T, H, dh).transpose(0, 2, 1, 3).astype(dt)
               for w, bn in (("wq", "bq"), ("wk", "bk"), ("wv", "bv")))
    s = jnp.einsum("bhqd,bhkd->bhqk", q, k).astype(jnp.float32)
    a = jax.nn.softmax(s / math.sqrt(dh) + bias, axis=-1)
    ctx = jnp.einsum("bhqk,bhkd->bhqd", a.astype(dt), v).transpose(0, 2, 1, 3).reshape(B, T, cfg.hidden)
    x = _layer_norm(x + dense(ctx, p["wo"], p["bo"]), p["ln1_g"], p["ln1_b"], cfg.eps)
    h = act(dense(x, p["wi"], p["bi"]))
    x = _layer_norm(x + dense(h, p["wf"], p["bf"]), p["ln2_g"], p["ln2_b"], cfg.eps)
    return x, None

  # layers are stacked on a leading axis: one traced layer, compile time independent of depth
  x, _ = jax.lax.scan(layer, x, params["layers"])
  return x


def pool(hidden: jax.Array, mask: jax.Array, cfg: EncoderConfig) -> jax.Array:
  if cfg.pooling == "cls":
    out = hidden[:, 0]
  else:
    m = mask.astype(jnp.float32)[..., None]
    # clamp as sentence-transformers does: an all-pad filler row gives 0, not NaN
    out = (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
  if cfg.normalize:  # torch.nn.functional.normalize(eps=1e-12)
    out = out / jnp.maximum(jnp.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
  return out


def embed(params, cfg: EncoderConfig, ids: jax.Array, mask: jax.Array) -> jax.Array:
  """Pure: token ids [B, T] and mask [B, T] -> sentence embeddings [B, hidden] fp32."""
  return pool(forward(params, cfg, ids, mask), mask, cfg)


_embed_jit = jax.jit(embed, static_argnames=("cfg",))


# ------------------------------------------------------------------------------ host wrapper
def _bucket(n: int, buckets: Sequence[int]) -> int:
  for b in buckets:
    if n <= b:
      return b
  return -(-n // buckets[-1]) * buckets[-1]


def _pow2(n: int) -> int:
  return 1 << max(0, (n - 1).bit_length())


def prefixed(cfg: EncoderConfig, texts: Sequence[str], kind: str | None) -> list[str]:
  if kind not in (None, "query", "passage"):
    raise ValueError(f"kind must be 'query', 'passage' or None, got {kind!r}")
  pre = {"query": cfg.query_prefix, "passage": cfg.passage_prefix}.get(kind, "")
  return [pre + t for t in texts]


def tokenize(encoder: Encoder, texts: Sequence[str], kind: str | None = None,
             pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(ids, mask) int32 [len(texts), T], T = the length bucket of the longest text (or `pad_to`)."""
  encs = encoder.tokenizer.encode_batch(prefixed(encoder.cfg, texts, kind))
  longest = max((len(e.ids) for e in encs), default=1)
  T = pad_to or min(_bucket(longest, LENGTH_BUCKETS), encoder.cfg.max_positions)
  ids = np.full((len(encs), T), encoder.cfg.pad_id, np.int32)
  mask = np.zeros((len(encs), T), np.int32)
  for i, e in enumerate(encs):
    n = min(len(e.ids), T)
    ids[i, :n], mask[i, :n] = e.ids[:n], 1
  return ids, mask


def default_max_tokens() -> int:
  # measured on XLA:CPU (MiniLM): ~2k padded tokens per batch is fastest, 8k is ~1.6x slower
  # (activations fall out of cache); accelerators want big batches
  return 2048 if jax.default_backend() == "cpu" else 65536


def encode(encoder: Encoder, texts: Sequence[str], kind: str | None = None, batch_size: int = 64,
           max_tokens: int | None = None) -> np.ndarray:
  """Embeddings [len(texts), hidden] float32 in input order. `kind` picks the E5 prefix.
  A batch holds at most `batch_size` texts and `max_tokens` padded tokens (rows a power of two)."""
  texts = list(texts)
  if not texts:
    return np.zeros((0, encoder.cfg.hidden), np.float32)
  max_tokens = max_tokens or default_max_tokens()
  encs = encoder.tokenizer.encode_batch(prefixed(encoder.cfg, texts, kind))
  lens = np.array([len(e.ids) for e in encs])
  order = np.argsort(-lens, kind="stable")  # similar lengths share a batch: little padding
  outs, p = [], 0
  while p < len(texts):
    # longest first, so the chunk's first text fixes its length bucket
    T = min(_bucket(int(lens[order[p]]), LENGTH_BUCKETS), encoder.cfg.max_positions)
    rows = 1 << (max(1, min(batch_size, max_tokens // T)).bit_length() - 1)  # pow2 floor
    chunk = order[p:p + rows]
    p += len(chunk)
    B = _pow2(len(chunk))
    ids = np.full((B, T), encoder.cfg.pad_id, np.int32)
    mask = np.zeros((B, T), np.int32)
    for j, r in enumerate(chunk):
      ids[j, :lens[r]], mask[j, :lens[r]] = encs[r].ids, 1
    # dispatch only; results are fetched after the loop so tokenizing/padding overlaps compute
    outs.append(_embed_jit(encoder.params, encoder.cfg, ids, mask)[:len(chunk)])
  emb = np.concatenate([np.asarray(o) for o in outs])
  out = np.empty_like(emb)
  out[order] = emb
  return out


# -------------------------------------------------------------------------------------- loading
def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """name -> read-only memory-mapped array (numpy has no bf16: ml_dtypes supplies it)."""
  with open(path, "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(n))
  raw = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
  out = {}
  for name, info in header.items():
    if name == "__metadata__" or info["dtype"] not in _ST_DTYPES:
      continue
    s, e = info["data_offsets"]
    out[name] = raw[s:e].view(_ST_DTYPES[info["dtype"]]).reshape(info["shape"])
  return out


def _params_from_hf(tensors: dict[str, np.ndarray], hf: dict, where: str):
  # BertModel saves bare names; BertFor* heads and some exports prefix the encoder with "bert."
  t = {k[5:] if k.startswith("bert.") else k: v for k, v in tensors.items()}
  t = {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
       for k, v in t.items()}

  def get(name, shape, transpose=False):
    if name not in t:
      raise ValueError(f"{where}: missing tensor {name!r} (is this a BERT checkpoint?)")
    x = np.asarray(t[name], np.float32)
    x = x.T if transpose else x
    if x.shape != tuple(shape):
      raise ValueError(f"{where}: tensor {name!r} has shape {x.shape}, config expects {tuple(shape)}")
    return x

  D, F, L = hf["hidden_size"], hf["intermediate_size"], hf["num_hidden_layers"]
  embed_p = {"word": get("embeddings.word_embeddings.weight", (hf["vocab_size"], D)),
             "pos": get("embeddings.position_embeddings.weight", (hf["max_position_embeddings"], D)),
             "type": get("embeddings.token_type_embeddings.weight", (hf.get("type_vocab_size", 2), D)),
             "ln_g": get("embeddings.LayerNorm.weight", (D,)), "ln_b": get("embeddings.LayerNorm.bias", (D,))}
  names = {  # ours: (HF suffix, shape in our [in, out] layout, transpose from HF's [out, in])
      "wq": ("attention.self.query.weight", (D, D), True), "bq": ("attention.self.query.bias", (D,), False),
      "wk": ("attention.self.key.weight", (D, D), True), "bk": ("attention.self.key.bias", (D,), False),
      "wv": ("attention.self.value.weight", (D, D), True), "bv": ("attention.self.value.bias", (D,), False),
      "wo": ("attention.output.dense.weight", (D, D), True), "bo": ("attention.output.dense.bias", (D,), False),
      "ln1_g": ("attention.output.LayerNorm.weight", (D,), False),
      "ln1_b": ("attention.output.LayerNorm.bias", (D,), False),
      "wi": ("intermediate.dense.weight", (D, F), True), "bi": ("intermediate.dense.bias", (F,), False),
      "wf": ("output.dense.weight", (F, D), True), "bf": ("output.dense.bias", (D,), False),
      "ln2_g": ("output.LayerNorm.weight", (D,), False), "ln2_b": ("output.LayerNorm.bias", (D,), False)}
  layers = {k: np.stack([get(f"encoder.layer.{i}.{n}", shape, tr) for i in range(L)])
            for k, (n, shape, tr) in names.items()}
  return jax.tree.map(jnp.asarray, {"embed": embed_p, "layers": layers})


def _sentence_transformers_head(path: str) -> tuple[str | None, bool | None, int | None]:
  """(pooling, normalize, max_seq_length) from sentence-transformers files; None where absent."""
  modules_f = os.path.join(path, "modules.json")
  if not os.path.exists(modules_f):
    return None, None, None
  with open(modules_f) as f:
    modules = json.load(f)
  normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
  pooling = None
  for m in modules:
    pool_f = os.path.join(path, m.get("path", ""), "config.json")
    if m.get("type", "").endswith("Pooling") and os.path.exists(pool_f):
      with open(pool_f) as f:
        pc = json.load(f)
      pooling = "cls" if pc.get("pooling_mode_cls_token") else "mean"
      if pc.get("pooling_mode_max_tokens") or pc.get("pooling_mode_mean_sqrt_len_tokens"):
        raise ValueError(f"{pool_f}: only mean or cls pooling is supported")
  max_len = None
  sb = os.path.join(path, "sentence_bert_config.json")
  if os.path.exists(sb):
    with open(sb) as f:
      max_len = json.load(f).get("max_seq_length")
  return pooling, normalize, max_len


def _load_tokenizer(path: str, hf: dict, max_length: int):
  from tokenizers import Tokenizer
  tj = os.path.join(path, "tokenizer.json")
  if os.path.exists(tj):
    tok = Tokenizer.from_file(tj)
  elif os.path.exists(os.path.join(path, "vocab.txt")):  # older checkpoints: WordPiece vocab only
    from tokenizers.implementations import BertWordPieceTokenizer
    tc = {}
    if os.path.exists(os.path.join(path, "tokenizer_config.json")):
      with open(os.path.join(path, "tokenizer_config.json")) as f:
        tc = json.load(f)
    tok = BertWordPieceTokenizer(os.path.join(path, "vocab.txt"), lowercase=tc.get("do_lower_case", True))
  else:
    raise FileNotFoundError(f"{path}: neither tokenizer.json nor vocab.txt")
  # tokenizer.json may carry its own fixed padding/truncation (MiniLM's: pad and cut at 128);
  # transformers overrides them per call, so must we
  tok.no_padding()
  tok.enable_truncation(max_length)
  return tok


def load_encoder(path: str, *, max_length: int | None = None, pooling: str | None = None,
                 normalize: bool | None = None, query_prefix: str | None = None,
                 passage_prefix: str | None = None, compute_dtype: str = "float32") -> Encoder:
  """Load a local BERT-architecture checkpoint directory (see module doc for what it decides)."""
  cfg_f = os.path.join(path, "config.json")
  if not os.path.exists(cfg_f):
    raise FileNotFoundError(f"{path}: no config.json (expected a Hugging Face model directory)")
  with open(cfg_f) as f:
    hf = json.load(f)
  if hf.get("model_type") != "bert":
    raise ValueError(f"{cfg_f}: model_type {hf.get('model_type')!r} is not supported (only 'bert')")
  if hf.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError(f"{cfg_f}: only absolute position embeddings are supported")
  files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
  if not files:
    raise FileNotFoundError(f"{path}: no *.safetensors weights (convert pytorch_model.bin first)")
  tensors = {}
  for fpath in files:
    tensors.update(read_safetensors(fpath))
  st_pool, st_norm, st_len = _sentence_transformers_head(path)
  names = " ".join(os.path.basename(os.path.normpath(p)).lower()
                   for p in (path, hf.get("_name_or_path", "")))
  is_e5 = "e5" in names
  cfg = EncoderConfig(
      vocab_size=hf["vocab_size"], hidden=hf["hidden_size"], layers=hf["num_hidden_layers"],
      heads=hf["num_attention_heads"], intermediate=hf["intermediate_size"],
      max_positions=hf["max_position_embeddings"], type_vocab=hf.get("type_vocab_size", 2),
      eps=hf.get("layer_norm_eps", 1e-12), act=hf.get("hidden_act", "gelu"),
      pooling=pooling or st_pool or "mean",
      normalize=normalize if normalize is not None else (st_norm if st_norm is not None else True),
      max_length=min(max_length or st_len or 256, hf["max_position_embeddings"]),
      query_prefix=query_prefix if query_prefix is not None else ("query: " if is_e5 else ""),
      passage_prefix=passage_prefix if passage_prefix is not None else ("passage: " if is_e5 else ""),
      pad_id=hf.get("pad_token_id") or 0, compute_dtype=compute_dtype)
  params = _params_from_hf(tensors, hf, path)
  return Encoder(cfg=cfg, params=params, tokenizer=_load_tokenizer(path, hf, cfg.max_length))
