"""Single-turn GRPO on the peer's arithmetic task (../shared/peers/tunix_grpo_bench.py), as ONE
jitted step with the state donated:

    fresh key (split from state.rng) -> G samples per prompt (sampling.prefill + decode, T = 0.9,
    stop at EOS) -> reward in-graph (1 iff the completion's text contains the digits of a+b)
    -> group advantages -> log-probs under the current params and the frozen reference
    -> clipped-ratio loss + beta * k3 KL -> grads -> AdamW (train.step.apply_update)

    cfg = model_config(); sp = build_tokenizer("/tmp/peers")
    tx, schedule = optimizer()                        # optax.adamw(1e-4), as the peer (flattened)
    state = init_state(cfg, tx, seed=0)               # rl.step.RLState, ref = a separate copy
    step = make_step(cfg, ArithConfig(), tx, schedule)
    table = DigitTable.build(sp)
    state, metrics = step(state, encode_batch(sp, batch), table)

The work is the peer's, kept identical so the two step times compare: the same tiny Qwen3 (2
layers, hidden 64, MLP 256, 4 query / 2 KV heads of 16, vocab 512, untied head, q/k RMSNorm,
eps 1e-6, rope theta 1e4), the same 512-piece sentencepiece BPE (same corpus, same trainer
settings: `corpus_lines` / `build_tokenizer` are the peer's, reimplemented identically and
checked against it in tests/test_rl_arith.py), the same prompts (`make_batches`), BOS + prompt
left-padded to 32, G samples per prompt of up to 64 tokens, temperature 0.9, top_p 1, beta 0.04,
eps 0.2, `optax.adamw(1e-4)` with no clipping.

Differences from the peer, on purpose or by construction (none changes the amount of work):
* a fresh rollout key every step (Tunix reuses one fixed key, so its samples repeat for the same
  prompt);
* the reward is computed in the graph on token ids (`contains_gold`, `DigitTable`): the per-id
  text of every piece as digit classes, concatenated per completion; it equals the peer's Python
  `str(a+b) in sp.decode(completion)` (tested against that oracle);
* group advantages use grpo.group_advantages (population std, eps 1e-4; Tunix: ddof=1, eps 1e-6)
  and the loss aggregation is `ArithConfig.aggregation` (default token_mean; Tunix's default is
  sequence-mean-token-mean, available here as "sequence_mean").

Row layout: row r = prompt r // G, sample r % G, as the sampler holds it: the LEFT-padded prompt
(P columns), then the completion (T columns, its EOS included, as Tunix's completion mask includes
it, pads after), with rl/layout.py's KIND_* per token and the sampler's RoPE positions (0 at the
row's first real token), so the update's forward is the rollout's computation, and every row's
completion sits in the same T columns: the LM head and log-softmax run on those only.

Speed choices (none changes the numbers beyond float rounding; measured in BUILD_NOTES /
benchmarks/rl_step.py): the loss/grad pass runs over `update_chunks` row chunks (CPU scratch
memory small enough to be reused instead of page-faulted in every step), AdamW runs on the
params raveled into one vector (`optax.flatten`), the two layers are unrolled (`scan_layers=False`,
faster to compile), and the state is donated.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import random
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from foresight_jax import sampling
from foresight_jax.models import params as params_lib
from foresight_jax.models import presets, transformer
from foresight_jax.models.config import ModelConfig
from foresight_jax.rl import grpo
from foresight_jax.rl.layout import KIND_GEN, KIND_PAD, KIND_PROMPT
from foresight_jax.rl.step import RLState
from foresight_jax.train import step as step_lib

# The peer's fixed work (tunix_grpo_bench.MODEL and constants).
MODEL = dict(num_layers=2, embed_dim=64, hidden_dim=256, num_heads=4, head_dim=16, num_kv_heads=2,
             vocab_size=512)
MAX_PROMPT_LENGTH = 32
TEMPERATURE = 0.9
LEARNING_RATE = 1e-4
BETA = 0.04
EPSILON = 0.2
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3  # the peer's sentencepiece ids
GOLD_WIDTH = 4  # digits of a + b (at most 198 for the peer's operands in [0, 99]); room for more

# digit classes of the reward table
OTHER = 10   # any character that is not an ASCII digit
NONE = -1    # no character (past the piece's text, control pieces, beyond a stream's end)


def model_config(**overrides) -> ModelConfig:
  """The peer's tiny Qwen3 in our config: the `tiny` preset with every size set."""
  kw = dict(family="qwen3", qk_norm=True, vocab_size=MODEL["vocab_size"], hidden_size=MODEL["embed_dim"],
            intermediate_size=MODEL["hidden_dim"], num_layers=MODEL["num_layers"], num_heads=MODEL["num_heads"],
            num_kv_heads=MODEL["num_kv_heads"], head_dim=MODEL["head_dim"], rms_norm_eps=1e-6,
            rope_theta=10_000.0, tie_embeddings=False, bos_token_id=BOS_ID, eos_token_ids=(EOS_ID,),
            param_dtype="float32", compute_dtype="float32",
            # two layers unrolled: same math as the scan, less to compile (the first step's cost)
            scan_layers=False)
  kw.update(overrides)
  return presets.model_config("tiny", **kw)


# ------------------------------------------------------------------------------ data (the peer's)
_SYL = ["ka", "lo", "mi", "ne", "ru", "ta", "si", "po", "ve", "du", "zo",
        "ha", "ri", "be", "fu", "go", "ja", "wi", "xe", "yo", "qu", "ce"]


def corpus_lines(n_lines: int = 6000) -> list[str]:
  """The peer's `_corpus_lines`: deterministic arithmetic Q/A plus pseudo-words."""
  r = random.Random(1234)
  words = sorted({"".join(r.choice(_SYL) for _ in range(r.randint(1, 4))) for _ in range(3000)})
  lines = []
  for _ in range(n_lines):
    a, b = r.randint(0, 99), r.randint(0, 99)
    filler = " ".join(r.choice(words) for _ in range(r.randint(3, 12)))
    lines.append(f"Q: what is {a} plus {b}? A: {a + b}. {filler}")
  return lines


def build_tokenizer(work_dir: str, vocab_size: int = MODEL["vocab_size"]):
  """The peer's `build_tokenizer`: the same sentencepiece model file name, corpus and settings,
  so a model cached by either side is the other's too."""
  import sentencepiece as spm
  os.makedirs(work_dir, exist_ok=True)
  prefix = os.path.join(work_dir, f"tunix_bench_spm_v{vocab_size}")
  if not os.path.exists(prefix + ".model"):
    # write to a private name first: a concurrent reader never sees a half-written model
    tmp = f"{prefix}.tmp{os.getpid()}"
    with open(tmp + ".corpus.txt", "w") as f:
      f.write("\n".join(corpus_lines()))
    spm.SentencePieceTrainer.train(input=tmp + ".corpus.txt", model_prefix=tmp, vocab_size=vocab_size,
                                   model_type="bpe", character_coverage=1.0, pad_id=PAD_ID, unk_id=UNK_ID,
                                   bos_id=BOS_ID, eos_id=EOS_ID, num_threads=1, minloglevel=2)
    for ext in (".corpus.txt", ".vocab", ".model"):
      os.replace(tmp + ext, prefix + ext)
  sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
  assert sp.get_piece_size() == vocab_size, sp.get_piece_size()
  return sp


def make_batches(n_prompts: int, n_steps: int, seed: int, max_operand: int = 99) -> list[dict]:
  """The peer's `make_batches` (same draws at the default `max_operand`): S batches of N prompts.
  A smaller `max_operand` gives an easier task (tests: single-digit sums)."""
  r = random.Random(seed)
  batches = []
  for _ in range(n_steps):
    prompts, answers = [], []
    for _ in range(n_prompts):
      a, b = r.randint(0, max_operand), r.randint(0, max_operand)
      prompts.append(f"Q: what is {a} plus {b}? A:")
      answers.append(str(a + b))
    batches.append({"prompts": prompts, "answer": answers})
  return batches


@flax.struct.dataclass
class ArithBatch:
  """N prompts: BOS + prompt ids LEFT-padded to P, their lengths, the gold digits of a + b."""
  prompts: Any    # int32 [N, P]
  prompt_len: Any  # int32 [N]
  gold: Any       # int32 [N, Lg] digits 0..9, NONE after gold_len
  gold_len: Any   # int32 [N]


def encode_prompts(sp, prompts: Sequence[str], width: int = MAX_PROMPT_LENGTH) -> tuple[np.ndarray, np.ndarray]:
  """BOS + ids (as Tunix's sampler tokenises), left-padded with PAD_ID to `width`."""
  out = np.full((len(prompts), width), PAD_ID, np.int32)
  lens = np.zeros(len(prompts), np.int32)
  for i, p in enumerate(prompts):
    ids = [BOS_ID] + list(sp.encode(p))
    if len(ids) > width:
      raise ValueError(f"prompt {p!r} is {len(ids)} tokens with BOS, more than {width}")
    out[i, width - len(ids):] = ids
    lens[i] = len(ids)
  return out, lens


def encode_golds(answers: Sequence[str], width: int = GOLD_WIDTH) -> tuple[np.ndarray, np.ndarray]:
  g = np.full((len(answers), width), NONE, np.int32)
  n = np.zeros(len(answers), np.int32)
  for i, a in enumerate(answers):
    if not a.isdigit() or not a.isascii() or len(a) > width:
      raise ValueError(f"gold {a!r} must be 1..{width} ASCII digits")
    g[i, :len(a)] = [int(c) for c in a]
    n[i] = len(a)
  return g, n


def encode_batch(sp, batch: dict, width: int = MAX_PROMPT_LENGTH) -> ArithBatch:
  toks, lens = encode_prompts(sp, batch["prompts"], width)
  gold, gold_len = encode_golds(batch["answer"])
  return ArithBatch(prompts=toks, prompt_len=lens, gold=gold, gold_len=gold_len)


# ------------------------------------------------------------------------------ reward
class DigitTable(NamedTuple):
  """What each id adds to the decoded text, as digit classes: chars [V, C] int32 (0..9 a digit,
  OTHER any other character, NONE past the piece's text). Control ids (pad, bos, eos) add
  nothing, `<unk>` adds " ⁇ ", a piece's '▁' is a space: sentencepiece's DecodeIds, piece by piece
  (dropping the leading space of the first piece, as DecodeIds does, never changes which digit
  strings the text contains)."""
  chars: Any

  @classmethod
  def build(cls, sp) -> DigitTable:
    texts = []
    for i in range(sp.get_piece_size()):
      if sp.is_control(i):
        texts.append("")
      elif sp.is_unknown(i):
        texts.append(sp.decode([i]))
      else:
        texts.append(sp.id_to_piece(i).replace("\u2581", " "))
    return cls(chars=jnp.asarray(digit_classes(texts)))


def digit_classes(texts: Sequence[str]) -> np.ndarray:
  c = max(1, max(len(t) for t in texts))
  out = np.full((len(texts), c), NONE, np.int32)
  for i, t in enumerate(texts):
    out[i, :len(t)] = [int(ch) if ch in "0123456789" else OTHER for ch in t]
  return out


def contains_gold(table: DigitTable, tokens: jax.Array, valid: jax.Array, gold: jax.Array,
                  gold_len: jax.Array) -> jax.Array:
  """1.0 where the text of the valid ids of a row contains its gold digit string, else 0.0.

  tokens/valid [B, T], gold [B, Lg] (digits, then anything), gold_len [B] >= 1. The rows' texts
  are the ids' digit-class strings concatenated ([B, T*C], NONE entries moved to the end by a
  scatter), and the gold is matched at every offset."""
  chars = jnp.where(valid[..., None], table.chars[tokens], NONE)  # [B, T, C]
  b = chars.shape[0]
  flat = chars.reshape(b, -1)
  keep = flat != NONE
  idx = jnp.where(keep, jnp.cumsum(keep, axis=1) - 1, flat.shape[1])
  stream = jax.vmap(lambda i, v: jnp.full(v.shape, NONE, v.dtype).at[i].set(v, mode="drop"))(idx, flat)
  lg = gold.shape[1]
  stream = jnp.pad(stream, ((0, 0), (0, lg)), constant_values=NONE)
  n = flat.shape[1]
  hit = jnp.ones((b, n), bool)
  for k in range(lg):
    hit &= (k >= gold_len[:, None]) | (stream[:, k:k + n] == gold[:, k:k + 1])
  # a gold digit never equals NONE, so a match never runs past the row's text
  return jnp.any(hit, axis=1).astype(jnp.float32)


# ------------------------------------------------------------------------------ the step
@dataclasses.dataclass(frozen=True)
class ArithConfig:
  group_size: int = 4
  max_new_tokens: int = 64
  temperature: float = TEMPERATURE
  clip_eps: float = EPSILON
  beta: float = BETA
  aggregation: str = "token_mean"
  eos_id: int = EOS_ID
  pad_id: int = PAD_ID
  update_chunks: int = 4  # row chunks of the loss/grad pass (see `loss_and_grads`); 1 = one pass

  @property
  def grpo(self) -> grpo.GRPOConfig:
    return grpo.GRPOConfig(clip_eps=self.clip_eps, beta=self.beta, aggregation=self.aggregation)


@flax.struct.dataclass
class ArithRollout:
  """Rows r = prompt r // G, sample r % G, as the sampler holds them: the LEFT-padded prompt
  (P columns), then the completion (T columns, EOS included, pads after)."""
  tokens: Any       # [B, P + T]
  kind: Any         # [B, P + T] KIND_* (rl/layout.py): PAD, PROMPT, GEN
  positions: Any    # [B, P + T] RoPE positions, 0 at each row's first prompt token (the sampler's)
  lengths: Any      # [B] completion tokens, EOS included
  stop_reason: Any  # [B]
  logprobs: Any     # [B, T] the sampler's raw-model log p of each completion token (0 after lengths)
  gen_width: int = flax.struct.field(pytree_node=False, default=0)  # T

  @property
  def prompt_width(self) -> int:  # P
    return self.tokens.shape[1] - self.gen_width

  @property
  def completion(self) -> jax.Array:  # [B, T]
    return self.tokens[:, self.prompt_width:]


def optimizer(learning_rate: float = LEARNING_RATE, flat: bool = True
              ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The peer's `optax.adamw(lr)` (b1 .9, b2 .999, eps 1e-8, wd 1e-4 on every leaf), no clipping.

  `flat`: run it on all params raveled into one vector (`optax.flatten`). AdamW is elementwise,
  so the update is the same numbers; the program has one set of optimizer kernels instead of one
  per leaf (13 here), which cuts compile time (the first step's cost) and per-step dispatches."""
  tx = optax.adamw(learning_rate)
  return (optax.flatten(tx) if flat else tx), optax.constant_schedule(learning_rate)


def init_state(cfg: ModelConfig, tx: optax.GradientTransformation, seed: int = 0) -> RLState:
  """Random params, AdamW state, the frozen reference as a separate copy (the state is donated
  each step, so the two must not share buffers), the rollout key stream from `seed`. One jitted
  call (eager per-leaf ops would each compile a small program)."""
  @jax.jit
  def build(key):
    init_key, rng = jax.random.split(key)
    params = params_lib.init_params(cfg, init_key)
    return RLState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                   rng=jax.random.key_data(rng), skipped=jnp.zeros((), jnp.int32), ref_params=None)

  state = build(jax.random.key(seed))
  # copied outside the jit: inside, XLA may return one buffer for both equal outputs
  return state.replace(ref_params=jax.jit(lambda p: jax.tree.map(jnp.copy, p))(state.params))


def rollout(cfg: ModelConfig, acfg: ArithConfig, params, batch: ArithBatch, key: jax.Array) -> ArithRollout:
  """G samples of every prompt (row r = prompt r // G): prefill + while_loop decode."""
  g, t = acfg.group_size, acfg.max_new_tokens
  prompts = jnp.repeat(jnp.asarray(batch.prompts, jnp.int32), g, axis=0)
  plen = jnp.repeat(jnp.asarray(batch.prompt_len, jnp.int32), g, axis=0)
  b, p = prompts.shape
  sp = sampling.SamplingParams(temperature=acfg.temperature, top_p=1.0)
  stop = sampling.StopSpec.make(b, eos_ids=(acfg.eos_id,))
  params = jax.lax.stop_gradient(params)
  st = sampling.prefill(cfg, params, prompts, plen, key, sp, stop, max_new_tokens=t, pad_id=acfg.pad_id)
  out = sampling.decode(cfg, params, st, sp, stop).output()
  s = jnp.arange(p + t, dtype=jnp.int32)[None]
  start = (p - plen)[:, None]  # each row's first real column
  kind = jnp.where(s < start, KIND_PAD, jnp.where(s < p, KIND_PROMPT, jnp.where(
      s < p + out.lengths[:, None], KIND_GEN, KIND_PAD))).astype(jnp.int32)
  return ArithRollout(tokens=jnp.concatenate([prompts, out.tokens], axis=1), kind=kind,
                      positions=jnp.maximum(s - start, 0), lengths=out.lengths, stop_reason=out.stop_reason,
                      logprobs=out.logprobs, gen_width=t)


def rewards(acfg: ArithConfig, table: DigitTable, ro: ArithRollout, batch: ArithBatch) -> jax.Array:
  """[B] the peer's reward: the completion before its EOS contains the digits of a + b."""
  g = acfg.group_size
  comp = ro.completion
  valid = (jnp.arange(comp.shape[1])[None] < ro.lengths[:, None]) & (comp != acfg.eos_id)
  gold = jnp.repeat(jnp.asarray(batch.gold, jnp.int32), g, axis=0)
  gold_len = jnp.repeat(jnp.asarray(batch.gold_len, jnp.int32), g, axis=0)
  return contains_gold(table, comp, valid, gold, gold_len)


def completion_tokens(acfg: ArithConfig, ro: ArithRollout) -> jax.Array:
  """Generated tokens with EOS excluded (what the peer counts: Tunix's tokens before EOS)."""
  return (ro.lengths - (ro.stop_reason == sampling.STOP_EOS)).sum()


def completion_logprobs(cfg: ModelConfig, params, ro: ArithRollout) -> jax.Array:
  """[B, T] log p(completion token t | prompt, tokens < t) under `params` (raw model, fp32).

  grpo.token_logprobs's quantity on the completion columns only: one forward over the rows, the
  LM head and the log-softmax only at the T positions that predict a completion token (the prompt
  positions' logits are never needed: nothing there is trained)."""
  seg = (ro.kind != KIND_PAD).astype(jnp.int32)
  h, _ = transformer.hidden_states(cfg, params, ro.tokens, ro.positions, seg)
  p = ro.prompt_width
  logits = transformer.lm_head(cfg, params, h[:, p - 1:-1])
  gold = jnp.take_along_axis(logits, ro.tokens[:, p:, None], axis=-1)[..., 0]
  return gold - jax.nn.logsumexp(logits, axis=-1)


def _chunk(x, k: int):
  """[B, ...] -> [k, B/k, ...], chunk j = rows j::k (with rows split over devices, every device
  keeps its own rows in every chunk, as train/step.py's micro-batches)."""
  return x.reshape((x.shape[0] // k, k) + x.shape[1:]).swapaxes(0, 1)


def _agg_weight(aggregation: str, gen: jax.Array) -> jax.Array:
  """What one chunk's aggregate counts for: its trained tokens (token_mean) or its rows with any
  (sequence_mean). A chunk's loss times its weight, summed and divided by the total weight, is the
  whole batch's aggregate."""
  if aggregation == "token_mean":
    return gen.sum().astype(jnp.float32)
  if aggregation == "sequence_mean":
    return (gen.sum(axis=1) > 0).sum().astype(jnp.float32)
  raise ValueError(f"no chunked form for aggregation {aggregation!r}")


def loss_and_grads(cfg: ModelConfig, acfg: ArithConfig, params, ref_params, ro: ArithRollout,
                   adv: jax.Array) -> tuple[jax.Array, dict, Any]:
  """The GRPO loss of the whole batch and its gradient, over `acfg.update_chunks` row chunks.

  Each chunk runs the reference pass and the policy forward + backward on its rows only: the same
  arithmetic as one pass over all rows (the loss is a weighted sum of the chunks'), but the
  program's scratch memory shrinks by the chunk count. On the CPU that is the difference between
  reusing the scratch buffer every step and the allocator mapping (and the kernel zeroing, page
  by page) a fresh one: glibc maps every block over 32 MiB anew. The whole step's scratch at
  B=32, P=32, T=64 is 86 MiB in one pass (about 21k page faults, some 30 ms of system time a
  step on the 2-core host) against 21 MiB chunked by 4 (no faults)."""
  gcfg = acfg.grpo
  kind = ro.kind[:, ro.prompt_width:]  # GEN where a completion token was sampled, else PAD
  total = jnp.maximum(_agg_weight(gcfg.aggregation, kind == KIND_GEN), 1.0)

  def chunk(xs):
    r, a = xs
    k = r.kind[:, r.prompt_width:]
    w = _agg_weight(gcfg.aggregation, k == KIND_GEN) / total
    ref_logp = completion_logprobs(cfg, jax.lax.stop_gradient(ref_params), r) if gcfg.beta else None

    def loss_fn(p):
      logp = completion_logprobs(cfg, p, r)
      # one update per rollout: the "old" policy is the current one (ratio 1 in value)
      loss, aux = grpo.policy_loss(logp, jax.lax.stop_gradient(logp), ref_logp, a, k, gcfg)
      return loss * w, aux

    (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    n_tok = aux["trained_tokens"]
    return g, loss, {"kl": aux["kl"] * n_tok, "clip_fraction": aux["clip_fraction"] * n_tok, "trained_tokens": n_tok}

  n = acfg.update_chunks
  if n == 1:
    grads, loss, aux = chunk((ro, adv))
  else:
    if adv.shape[0] % n:
      raise ValueError(f"{adv.shape[0]} rows do not split into update_chunks={n}")
    xs = (jax.tree.map(functools.partial(_chunk, k=n), ro), _chunk(adv, n))

    def body(carry, x):
      g, l, a = chunk(x)
      return jax.tree.map(jnp.add, carry, (g, l, a)), None

    zeros = (jax.tree.map(jnp.zeros_like, params), jnp.zeros((), jnp.float32),
             {k: jnp.zeros((), jnp.float32) for k in ("kl", "clip_fraction", "trained_tokens")})
    (grads, loss, aux), _ = jax.lax.scan(body, zeros, xs)
  n_tok = jnp.maximum(aux["trained_tokens"], 1.0)
  aux = {"kl": aux["kl"] / n_tok, "clip_fraction": aux["clip_fraction"] / n_tok,
         "trained_tokens": aux["trained_tokens"], "pg_loss": loss}
  return loss, aux, grads


def update(cfg: ModelConfig, acfg: ArithConfig, tx, schedule, state: RLState, ro: ArithRollout,
           batch: ArithBatch, table: DigitTable, rng: jax.Array) -> tuple[RLState, dict]:
  """Rewards -> advantages -> loss -> grads -> AdamW, for one rollout."""
  r = rewards(acfg, table, ro, batch)
  adv = grpo.group_advantages(r, acfg.group_size)
  loss, aux, grads = loss_and_grads(cfg, acfg, state.params, state.ref_params, ro, adv)
  new_state, upd = step_lib.apply_update(tx, schedule, state, grads, loss, rng)
  metrics = {"reward": r.mean(), "rewards": r, "completion_tokens": completion_tokens(acfg, ro),
             "eos_fraction": (ro.stop_reason == sampling.STOP_EOS).astype(jnp.float32).mean(),
             "adv_abs": jnp.abs(adv).mean(), **aux, **upd}
  return new_state, metrics


def arith_step(cfg: ModelConfig, acfg: ArithConfig, tx, schedule, state: RLState, batch: ArithBatch,
               table: DigitTable) -> tuple[RLState, dict]:
  """The whole step (un-jitted; `make_step` jits it)."""
  rng, k_roll = jax.random.split(jax.random.wrap_key_data(state.rng))  # a fresh key every step
  ro = rollout(cfg, acfg, state.params, batch, k_roll)
  new_state, metrics = update(cfg, acfg, tx, schedule, state, ro, batch, table, rng)
  metrics["completion"] = ro.completion
  return new_state, metrics


def make_step(cfg: ModelConfig, acfg: ArithConfig, tx, schedule, mesh=None, *, donate: bool = True):
  """Jitted `(state, batch, table) -> (state, metrics)` with the state donated. With a mesh, it
  runs under it (the model's logical constraints put the rows on the batch axes)."""
  fn = jax.jit(functools.partial(arith_step, cfg, acfg, tx, schedule), donate_argnums=(0,) if donate else ())
  if mesh is None:
    return fn

  def run(state, batch, table):
    with jax.set_mesh(mesh):
      return fn(state, batch, table)

  run.jitted = fn
  return run


def make_split_step(cfg: ModelConfig, acfg: ArithConfig, tx, schedule):
  """The same step as two jitted halves, for profiling: `roll(state) -> (rng, rollout)` (the
  sampling) and `upd(state, rollout, batch, table, rng) -> (state, metrics)` (rewards, both
  log-prob passes, grads and AdamW; state donated)."""
  @jax.jit
  def roll(params, rng_data, batch):
    rng, k_roll = jax.random.split(jax.random.wrap_key_data(rng_data))
    return jax.random.key_data(rng), rollout(cfg, acfg, params, batch, k_roll)

  @functools.partial(jax.jit, donate_argnums=(0,))
  def upd(state, ro, batch, table, rng_data):
    return update(cfg, acfg, tx, schedule, state, ro, batch, table, jax.random.wrap_key_data(rng_data))

  return roll, upd


__all__ = [
  "MODEL",
  "ArithBatch",
  "ArithConfig",
  "ArithRollout",
  "DigitTable",
  "build_tokenizer",
  "contains_gold",
  "corpus_lines",
  "encode_batch",
  "encode_golds",
  "encode_prompts",
  "init_state",
  "make_batches",
  "make_split_step",
  "make_step",
  "model_config",
  "optimizer",
  "rewards",
  "rollout",
  "update",
]
