"""Model configuration: one frozen dataclass for every supported family, plus size arithmetic.

The dataclass is hashable so it can be a static argument of `jax.jit`; the ml-collections
presets in `presets.py` are converted into it with `ModelConfig.from_dict`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

FAMILIES = ("llama", "qwen2", "qwen3", "youtu")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Decoder-only transformer hyper-parameters (names follow the HF config where one exists)."""

  family: str
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rms_norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  # Llama-3 style frequency scaling: (factor, low_freq_factor, high_freq_factor, original_max_pos).
  rope_llama3_scaling: tuple[float, float, float, int] | None = None
  attention_bias: bool = False  # Qwen2/2.5: bias on q, k, v projections
  qk_norm: bool = False  # Qwen3: per-head RMSNorm on q and k
  tie_embeddings: bool = False
  # std of every normally-initialised weight (residual-branch outputs: this / sqrt(2 layers)). HF's
  # 0.02 suits widths of ~768 and up; a from-scratch model of width 128 learns to copy sooner at
  # ~1/sqrt(width) (BUILD_NOTES, "The base LM's initial scale")
  initializer_range: float = 0.02
  # Multi-head latent attention (Youtu / DeepSeek-V3 dense attention); used when kv_lora_rank > 0.
  q_lora_rank: int | None = None
  kv_lora_rank: int = 0
  qk_nope_head_dim: int = 0
  qk_rope_head_dim: int = 0
  v_head_dim: int = 0
  rope_interleave: bool = False
  max_position_embeddings: int = 4096
  bos_token_id: int | None = None
  eos_token_ids: tuple[int, ...] = ()
  # Numerics and memory/speed knobs (do not change the math).
  param_dtype: str = "float32"
  compute_dtype: str = "float32"
  remat_policy: str = "none"
  # layers as one lax.scan over stacked weights (True) or a Python loop (False). None = scan except on
  # a GPU backend, from BUILD_NOTES (H200, seq 4096 batch 4 bf16): unrolled was 4.9% faster at the
  # Youtu-2B shape, 0.9% at Qwen2.5-1.5B, 3.4% in the full trainer, and 7 GiB smaller (no stacked
  # residual writes), for a longer first compile; on the 2-core CPU host unrolled was slower
  scan_layers: bool | None = None
  # training self-attention kernel (models/kernels.py): auto = cuDNN flash on GPU (packed rows in
  # cuDNN's ragged layout; "cudnn_mask" passes them as a mask instead: slower, ~15 GiB less memory at
  # Youtu-2B seq 4096), splash on TPU, XLA on CPU
  attention_impl: str = "auto"
  # cuDNN's ragged layout takes a static number of documents per packed row; a batch with a row of
  # more takes the mask path for that step (kernels.py). jax's wrapper hands cuDNN rows x this many
  # sequences (softmax statistics [rows x M, heads, T] fp32), the unused ones empty; whether a
  # smaller M pays is what benchmarks/gpu_ragged_size.sh measures (not yet run: BUILD_NOTES)
  ragged_max_segments: int = 16
  # decode reads the projections that share an input (q/k/v, MLA's q_a/kv_a, gate/up) as one matmul
  # each (transformer.decode_params): fewer kernels per generated token. None = on for GPU only,
  # from BUILD_NOTES: 1.045x (batch 1) and 1.049x (batch 128) at Youtu-2B shape on an H200, but
  # 1.00x (tiny, batch 32) and 0.94x (SmolLM2 shape, batch 8) on the CPU host
  decode_fusion: bool | None = None

  def __post_init__(self):
    if self.family not in FAMILIES:
      raise ValueError(f"unknown model family {self.family!r}; supported: {FAMILIES}")
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"unknown remat_policy {self.remat_policy!r}; supported: {REMAT_POLICIES}")
    from foresight_jax.models import kernels  # local: kernels imports layers, which imports config
    if self.attention_impl not in kernels.IMPLS:
      raise ValueError(f"unknown attention_impl {self.attention_impl!r}; supported: {kernels.IMPLS}")
    if self.ragged_max_segments < 1:
      raise ValueError(f"ragged_max_segments={self.ragged_max_segments} must be >= 1")
    if not self.is_mla and self.num_heads % self.num_kv_heads:
      raise ValueError(f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}")

  @property
  def is_mla(self) -> bool:
    return self.kv_lora_rank > 0

  @property
  def scanned(self) -> bool:
    """Whether the layers run as one lax.scan (`scan_layers`, resolved for this backend)."""
    if self.scan_layers is not None:
      return self.scan_layers
    import jax  # local: the config module stays importable without touching a backend
    return jax.default_backend() != "gpu"

  @property
  def qk_head_dim(self) -> int:
    return self.qk_nope_head_dim + self.qk_rope_head_dim if self.is_mla else self.head_dim

  @property
  def rope_dim(self) -> int:
    return self.qk_rope_head_dim if self.is_mla else self.head_dim

  def replace(self, **kw) -> "ModelConfig":
    return dataclasses.replace(self, **kw)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
    d = dict(d.to_dict() if hasattr(d, "to_dict") else d)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
      raise ValueError(f"unknown model config keys {unknown}; known: {sorted(names)}")
    for key in ("rope_llama3_scaling", "eos_token_ids"):
      if d.get(key) is not None:
        d[key] = tuple(d[key])
    return cls(**d)


def param_count(cfg: ModelConfig, include_embeddings: bool = True) -> int:
  """Exact number of parameters of `cfg` (matches `sum(x.size for x in params)`)."""
  from foresight_jax.models import params as params_lib  # local: params imports config

  specs = params_lib.param_specs(cfg)
  total = 0
  for path, spec in params_lib.flatten_specs(specs):
    if not include_embeddings and path[0] in ("embed", "lm_head"):
      continue
    total += math.prod(spec.shape)
  return total


def train_flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
  """Training FLOPs per token: 6 x matmul params (fwd+bwd) + causal attention score/value FLOPs.

  Embedding lookups are free; the LM head is a matmul and counts. Attention: QK^T and PV each cost
  2 * seq * dim per head per token forward; causal masking halves the useful work (PaLM/MaxText
  convention), times 3 for forward + backward.
  """
  n = param_count(cfg, include_embeddings=False)
  n += cfg.vocab_size * cfg.hidden_size  # the LM head matmul (tied or not)
  if cfg.is_mla:
    att_dim = cfg.num_heads * (cfg.qk_head_dim + cfg.v_head_dim)
  else:
    att_dim = cfg.num_heads * 2 * cfg.head_dim
  attn = 2 * seq_len * att_dim * cfg.num_layers / 2  # forward, causal
  return 6.0 * n + 3.0 * attn
