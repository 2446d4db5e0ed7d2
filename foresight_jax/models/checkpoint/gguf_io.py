"""GGUF (llama.cpp) import: hyper-parameters from the metadata, tensors dequantized per layer.

Architectures: llama, qwen2, qwen3 (dense, SwiGLU, RMSNorm). llama.cpp's converter permutes the
rows of llama's attn_q / attn_k so its rope can pair adjacent dims; we undo that exactly as
transformers' GGUF loader does (`LlamaTensorProcessor._reverse_permute_weights`). Qwen GGUFs use
NeoX rope and are stored unpermuted. Tensors come from a read-only memory map of the file and are
dequantized one (row block of one) tensor at a time with `gguf.quants.dequantize`.
"""
from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np

from foresight_jax.models.checkpoint import layout
from foresight_jax.models.checkpoint.layout import CheckpointError
from foresight_jax.models.config import ModelConfig

ARCH_FAMILY = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
}
_GLOBAL_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                 "lm_head.weight": "output.weight"}
_LAYER_RE = re.compile(r"^model\.layers\.([^.]+)\.(.+)$")


def gguf_name(hf_name: str) -> str:
  """HF tensor name (or a "{i}" template) -> the llama.cpp GGUF name."""
  if hf_name in _GLOBAL_NAMES:
    return _GLOBAL_NAMES[hf_name]
  m = _LAYER_RE.match(hf_name)
  if m is None or m.group(2) not in _LAYER_NAMES:
    raise KeyError(hf_name)
  return f"blk.{m.group(1)}.{_LAYER_NAMES[m.group(2)]}"


def _supported_types():
  import gguf
  from gguf import quants
  ok = {gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16}
  return ok | set(getattr(quants, "_type_traits", {}))


def _f32(x) -> float:
  """GGUF stores float32: recover the short decimal it was written from (9.9999997e-06 -> 1e-05)."""
  return float(str(np.float32(x)))


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
  """Undo llama.cpp's rope row permutation (transformers' `_reverse_permute_weights`)."""
  dim = w.shape[0] // n_head // 2
  return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def _checked_reader(path: str):
  """A GGUFReader that checks each tensor's byte range against the file size before mapping it,
  so a truncated file is reported with the first tensor it cuts off."""
  import gguf

  class Reader(gguf.GGUFReader):
    def _build_tensors(self, start_offs, fields):
      for field in fields:
        _, name_data, _, dims, raw_dtype, offset = field.parts
        name = bytes(name_data).decode("utf-8", "replace")
        try:
          qtype = gguf.GGMLQuantizationType(int(raw_dtype[0]))
        except ValueError:
          raise CheckpointError(f"{path}: tensor {name!r} has unknown GGUF type id {int(raw_dtype[0])}") from None
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        end = int(start_offs + offset[0]) + int(np.prod(dims)) * size // block
        if end > len(self.data):
          raise CheckpointError(f"{path}: truncated GGUF file: tensor {name!r} ends at byte {end}, "
                                f"file has {len(self.data)}")
      super()._build_tensors(start_offs, fields)

  return Reader(path, "r")


class GGUFSource:
  def __init__(self, path: str):
    import gguf
    self.path = path
    try:
      self.reader = _checked_reader(path)
    except CheckpointError:
      raise
    except FileNotFoundError:
      raise CheckpointError(f"{path}: not found") from None
    except Exception as e:  # the reader raises assorted errors on truncated / corrupt files
      raise CheckpointError(f"{path}: corrupt or truncated GGUF file: {type(e).__name__}: {e}") from None
    self.tensors = {t.name: t for t in self.reader.tensors}
    self.arch = self.field("general.architecture")
    if self.arch not in ARCH_FAMILY:
      raise CheckpointError(f"{path}: unsupported GGUF architecture {self.arch!r} "
                            f"(supported: {sorted(ARCH_FAMILY)})")
    supported = _supported_types()
    for t in self.reader.tensors:
      if t.tensor_type not in supported:
        raise CheckpointError(f"{path}: tensor {t.name!r} has unsupported GGUF type {t.tensor_type.name}")
      block, size = gguf.GGML_QUANT_SIZES[t.tensor_type]
      want = int(t.n_elements) // block * size
      if t.data.nbytes != want or int(t.n_elements) % block:
        raise CheckpointError(f"{path}: truncated or corrupt data for tensor {t.name!r} "
                              f"({t.data.nbytes} of {want} bytes)")
    self.n_head = self.n_kv_head = None  # set by config(); needed to un-permute llama q/k

  def field(self, key: str, default=None, required: bool = False):
    f = self.reader.fields.get(key)
    if f is None:
      if required:
        raise CheckpointError(f"{self.path}: missing GGUF metadata {key!r}")
      return default
    try:
      return f.contents()
    except Exception as e:
      raise CheckpointError(f"{self.path}: corrupt GGUF metadata {key!r}: {e}") from None

  def config(self, dtype: str, compute_dtype: str) -> ModelConfig:
    a = self.arch
    meta = lambda k, default=None, required=False: self.field(f"{a}.{k}", default, required)
    L, D = meta("block_count", required=True), meta("embedding_length", required=True)
    H = meta("attention.head_count", required=True)
    K = meta("attention.head_count_kv", H)
    if isinstance(K, list):
      if len(set(K)) != 1:
        raise CheckpointError(f"{self.path}: per-layer head_count_kv {K} is not supported")
      K = K[0]
    rope_kind = meta("rope.scaling.type", "none")
    if rope_kind not in ("none", None) or "rope_freqs.weight" in self.tensors:
      raise CheckpointError(f"{self.path}: unsupported GGUF rope scaling "
                            f"({rope_kind if rope_kind != 'none' else 'tensor rope_freqs.weight'})")
    hd = meta("attention.key_length") or D // H
    if meta("attention.value_length", hd) != hd:
      raise CheckpointError(f"{self.path}: attention.value_length != key_length is not supported")
    vocab = meta("vocab_size")
    if vocab is None:
      toks = self.reader.fields.get("tokenizer.ggml.tokens")
      if toks is None:
        raise CheckpointError(f"{self.path}: no {a}.vocab_size nor tokenizer.ggml.tokens in metadata")
      vocab = len(toks.data)
    eos = self.field("tokenizer.ggml.eos_token_id")
    family = ARCH_FAMILY[a]
    self.n_head, self.n_kv_head = int(H), int(K)
    try:
      return ModelConfig(
          family=family, vocab_size=int(vocab), hidden_size=int(D),
          intermediate_size=int(meta("feed_forward_length", required=True)), num_layers=int(L),
          num_heads=int(H), num_kv_heads=int(K), head_dim=int(hd),
          rms_norm_eps=_f32(meta("attention.layer_norm_rms_epsilon", 1e-6)),
          rope_theta=_f32(meta("rope.freq_base", 10000.0)), attention_bias=family == "qwen2",
          qk_norm=family == "qwen3", tie_embeddings="output.weight" not in self.tensors,
          max_position_embeddings=int(meta("context_length", 4096)),
          bos_token_id=self.field("tokenizer.ggml.bos_token_id"), eos_token_ids=() if eos is None else (int(eos),),
          param_dtype=dtype, compute_dtype=compute_dtype)
    except (TypeError, ValueError) as e:
      raise CheckpointError(f"{self.path}: {e}") from None

  def shapes(self):
    return {n: tuple(int(d) for d in reversed(t.shape)) for n, t in self.tensors.items()}

  def where(self, name: str) -> str:
    return self.path

  def read(self, name, ranges):
    from gguf import quants
    t = self.tensors[name]
    permute = self.arch == "llama" and (".attn_q.weight" in name or ".attn_k.weight" in name)
    r0, r1 = ranges[0]
    if permute:  # the permutation is within each head: whole heads can be read on their own
      hd = t.data.shape[0] // (self.n_head if ".attn_q." in name else self.n_kv_head)
      a, b = (r0, r1) if r0 % hd == 0 and r1 % hd == 0 else (0, t.data.shape[0])
    else:
      a, b = r0, r1
    try:  # quant blocks run along a row, so a row block dequantizes exactly
      w = np.array(quants.dequantize(t.data[a:b], t.tensor_type), dtype=np.float32)
    except Exception as e:
      raise CheckpointError(f"{self.path}: cannot dequantize tensor {name!r} ({t.tensor_type.name}): {e}") from None
    if permute:
      w = _unpermute(w, (b - a) // hd)[r0 - a:r1 - a]
    if len(ranges) > 1 and tuple(ranges[1]) != (0, w.shape[1]):
      w = w[:, ranges[1][0]:ranges[1][1]]
    return w


def load_gguf(path: str, dtype=None, mesh=None, compute_dtype=None):
  dtype = jnp.dtype(dtype or "float32").name
  source = GGUFSource(path)
  cfg = source.config(dtype, jnp.dtype(compute_dtype or dtype).name)
  layout.validate(cfg, source, rename=gguf_name)
  return cfg, layout.place(cfg, source, mesh, source_name=gguf_name)

