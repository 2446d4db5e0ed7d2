"""Data side of the training stages: trajectories -> foresight blocks -> tokenizer -> batches.

    trajs, held_out = load_trajectories(cfg)          # JSONL and/or synthetic world, augmented
    tok = make_tokenizer(cfg, trajs, init_path, workdir)
    it = make_iterator(trajs, tok, cfg)               # this host's rows of each global batch

WM-AMT renders trajectories in the raw turn format (`pipeline.build_pipeline`). FE-SFT renders
them as conversations in the tokenizer's chat template (`chat_segments`): the task is the user
turn, each agent turn an assistant message, each observation a tool turn. Each message is
encoded on its own (boundary-exact, as in pipeline_tokenize.py) so the loss mask is exact: in
mode "sft" only assistant content and its end-of-turn marker are trained, never the role
headers, the prompt or observations.

Multi-host (`data.host_sharding`): "source" gives each process its own shard of the
trajectories, packed into global_batch / processes rows (nothing is read twice; the default);
"slice" makes every process build the same global batch and keep its rows
(`sharding.host_local_batch_slice`), so a run on N processes is step-for-step the run on one.
Either way the checkpointed iterator state is `DataState`'s: with "source" it gathers every
process's state (they differ), so each one resumes its own shard exactly.
"""
from __future__ import annotations

import json
import logging
import os
import zlib
from typing import Any, Sequence

import grain
import numpy as np

from foresight_jax.data import pipeline
from foresight_jax.data.pipeline_pack import LengthPolicyIterDataset, PadBatch, ShiftPackedRow
from foresight_jax.data.pipeline_sources import to_trajectory
from foresight_jax.data.pipeline_tokenize import MODES
from foresight_jax.data.render import (Segment, invalid_message, render_prompt, render_segments, render_turn,
                                      slip_turns)
from foresight_jax.data.schema import Trajectory
from foresight_jax.tokenizer import FORESIGHT_TOKENS, Tokenizer
from foresight_jax.train.stages_config import TRAIN_SENTENCEPIECE, ConfigError, data_paths

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ trajectories
def _held_out(traj: Trajectory, fraction: float) -> bool:
  # by task id, not position: the split is the same whatever the file order or the host
  return fraction > 0 and zlib.crc32(traj.task.id.encode()) % 10_000 < fraction * 10_000


def load_trajectories(cfg) -> tuple[list[Trajectory], list[Trajectory], dict]:
  """(train, held-out, summary). Every host calls this and gets the same lists (generation and
  augmentation are seeded), so no host has to broadcast data."""
  from foresight_jax.data.foresight import ForesightConfig, build_dataset
  from foresight_jax.data.schema import read_trajectories
  d = cfg.data
  trajs: list[Trajectory] = []
  summary: dict[str, Any] = {"files": {}}
  for path in data_paths(cfg):
    got, report = read_trajectories(path)
    if not got:
      raise ConfigError(f"data.paths: {path!r} holds no valid trajectory ({report.read} lines read, "
                        f"{report.rejected} rejected: {dict(report.reasons)})")
    summary["files"][path] = {"accepted": report.accepted, "rejected": report.rejected}
    trajs.extend(got)
  worlds = []
  if d.synthetic:
    from foresight_jax.data.generate import GenConfig, generate, make_worlds
    gcfg = GenConfig(seed=d.seed)
    worlds = make_worlds(gcfg)
    trajs.extend(generate(gcfg, d.synthetic, worlds=worlds))
    summary["synthetic"] = d.synthetic
  if d.augment:
    fcfg = ForesightConfig(variant=d.variant, rollout_horizon=d.horizon, rollout_max_tokens=d.rollout_max_tokens,
                           n_branches=d.branches, seed=d.seed, forecast_noise=d.forecast_noise)
    trajs = build_dataset(trajs, fcfg, worlds)
  train = [t for t in trajs if not _held_out(t, d.eval_fraction)]
  held = [t for t in trajs if _held_out(t, d.eval_fraction)]
  if not train:
    raise ConfigError(f"data.eval_fraction={d.eval_fraction} holds out all {len(trajs)} trajectories")
  if d.eval_fraction and not held:
    raise ConfigError(f"data.eval_fraction={d.eval_fraction} holds out none of {len(trajs)} trajectories")
  import jax
  n = jax.process_count() if d.host_sharding == "source" else 1
  for name, part in [("training", train)] + ([("held-out", held)] if d.eval_fraction else []):
    if len(part) < n:  # each process reads its own shard of every split
      raise ConfigError(f"data.host_sharding='source': {len(part)} {name} trajectories cannot be "
                        f"shared by {n} processes (add data, or use data.host_sharding='slice')")
  summary.update(train=len(train), held_out=len(held),
                 success_rate=round(sum(t.score for t in trajs) / len(trajs), 4))
  return train, held, summary


def _readouts(world, name: str) -> str:
  """The entity's facts as the agent's thoughts state them after reading its document, in a seeded
  order: " The mayor of X is Y. The country of X is Z." (`data.doc_readouts`)."""
  import random
  from foresight_jax.data.world import RELATIONS
  facts = [f"The {RELATIONS[r].desc} of {name} is {o}." for r, o in world.entities[name].rel.items()]
  random.Random(f"readouts:{name}").shuffle(facts)
  return "".join(" " + f for f in facts)


def load_documents(cfg) -> tuple[list[str], list[str], dict]:
  """(train, held-out, summary) documents of the `pretrain` stage: the encyclopedia of
  `data.documents` synthetic worlds (seeds data.seed * 1000 + w), one document per entity, in the
  layout a search observation shows it (`(Title: t) text`). Names recur within a document, so a
  model pretrained on them learns to copy novel names: what every later stage needs on worlds
  it has never seen."""
  from foresight_jax.data.generate import GenConfig, make_worlds
  from foresight_jax.rl.device_search import passage_text
  d = cfg.data
  worlds = make_worlds(GenConfig(seed=d.seed, n_worlds=d.documents))
  docs = [passage_text(t, x) + (_readouts(w, t) if d.doc_readouts else "") for w in worlds for t, x in w.docs]
  held_out = lambda text: d.eval_fraction > 0 and zlib.crc32(text.encode()) % 10_000 < d.eval_fraction * 10_000  # noqa: E731
  train = [x for x in docs if not held_out(x)]
  held = [x for x in docs if held_out(x)]
  if not train:
    raise ConfigError(f"data.eval_fraction={d.eval_fraction} holds out all {len(docs)} documents")
  return train, held, {"worlds": d.documents, "documents": len(docs), "train": len(train), "held_out": len(held)}


# ------------------------------------------------------------------------------ chat rendering
def chat_messages(traj: Trajectory, template: str, variant: str | None,
                  slips: dict[int, str] | None = None) -> list[dict[str, Any]]:
  """The conversation; a slipped attempt (render.slip_turns) is an assistant message marked
  "train": False, followed by the invalid-action reply as a tool message."""
  obs_role = "user" if template == "youtu" else "tool"  # youtu's template has no tool role
  # the prompt's instructions: the variant given, else inferred from the blocks (as render_segments)
  fs = [s.foresight for s in traj.steps if s.foresight is not None]
  v = variant or ("none" if not fs else "full" if fs[0].success is not None else "state")
  msgs = [{"role": "user", "content": render_prompt(traj.task, v).rstrip("\n")}]
  for i, step in enumerate(traj.steps):
    if slips and i in slips:
      msgs += [{"role": "assistant", "content": slips[i], "train": False},
               {"role": obs_role, "content": f"<information>{invalid_message(traj.task.domain)}</information>"}]
    msgs.append({"role": "assistant", "content": render_turn(step)})
    if step.observation is not None:
      msgs.append({"role": obs_role, "content": f"<information>{step.observation}</information>"})
  return msgs


def chat_segments(traj: Trajectory, tok: Tokenizer, variant: str | None = None,
                  slips: dict[int, str] | None = None) -> list[Segment]:
  """The conversation as role segments whose concatenation is exactly the chat template's text.

  Each message's text is the difference between the template rendered up to it and up to the
  message before, so whatever the template writes (BOS, default system turn, headers, end
  markers) lands in exactly one segment. An assistant message is split into its header
  ("prompt": never a target in SFT), its content + end-of-turn marker ("assistant"), and the
  whitespace after the marker ("prompt": generation stops at the marker)."""
  msgs = chat_messages(traj, tok.chat_template, variant, slips)
  segs, prev = [], ""
  plain = [{"role": m["role"], "content": m["content"]} for m in msgs]  # what the template sees
  for i, m in enumerate(msgs):
    text = tok.apply_chat_template(plain[:i + 1], add_generation_prompt=False)
    if not text.startswith(prev):
      raise ValueError(f"chat template {tok.chat_template!r} is not prefix-stable")
    piece, prev = text[len(prev):], text
    if m["role"] != "assistant":
      segs.append(Segment("prompt" if i == 0 else "observation", piece))
      continue
    body = m["content"].strip()  # llama3 strips content
    j = piece.find(body)
    if j < 0:
      raise ValueError(f"chat template {tok.chat_template!r} altered an assistant message")
    rest = piece[j:]
    tail = rest[len(rest.rstrip()):]
    body_role = "assistant" if m.get("train", True) else "context"
    segs += [Segment("prompt", piece[:j]), Segment(body_role, rest[:len(rest) - len(tail)]),
             Segment("prompt", tail)]
  return [s for s in segs if s.text]


def tokenize_chat(traj: Trajectory, tok: Tokenizer, mode: str, variant: str | None = None,
                  slip_rate: float = 0.0, seed: int = 0) -> dict:
  """{"tokens", "loss_mask"} of the chat rendering (the same layout as tokenize_trajectory)."""
  table = MODES[mode]
  segs = chat_segments(traj, tok, variant, slip_turns(traj, slip_rate, seed))
  encoded = tok.encode_batch([s.text for s in segs])
  text = "".join(sg.text for sg in segs)
  bos = tok.bos_id if tok.default_add_bos and not tok.chat_template_writes_bos(text) else None
  ids, mask = ([bos], [0]) if bos is not None else ([], [])
  for seg, e in zip(segs, encoded):
    ids += e
    mask += [table[seg.role]] * len(e)
  return {"tokens": np.asarray(ids, np.int32), "loss_mask": np.asarray(mask, np.int32)}


class ChatTokenizeRecord(grain.transforms.Map):
  def __init__(self, tok: Tokenizer, mode: str, variant: str | None, field: str, slip_rate: float = 0.0,
               seed: int = 0):
    self.tok, self.mode, self.variant, self.field = tok, mode, variant, field
    self.slip_rate, self.seed = slip_rate, seed

  def map(self, record: Any) -> dict[str, Any]:
    try:
      traj = to_trajectory(record, self.field)
    except ValueError as e:
      return {"rejected": str(e)[:200]}
    return tokenize_chat(traj, self.tok, self.mode, self.variant, self.slip_rate, self.seed)


def rendered_texts(trajs: Sequence[Trajectory], cfg, tok: Tokenizer | None = None) -> list[str]:
  """What the model will read, for training a tokenizer (the plain chat template when chat).
  For `pretrain` (documents), the documents themselves."""
  if cfg.stage == "pretrain":
    return list(trajs)
  if not cfg.data.chat_format:
    return ["".join(s.text for s in render_segments(t, cfg.data.variant)) for t in trajs]
  from foresight_jax.tokenizer.chat import render_chat
  return [render_chat(chat_messages(t, "plain", cfg.data.variant), "plain", add_generation_prompt=False)
          for t in trajs]


# ------------------------------------------------------------------------------ tokenizer
def add_foresight_tokens(tok: Tokenizer) -> Tokenizer:
  missing = [t for t in FORESIGHT_TOKENS if not tok.is_single_token(t)]
  if missing:
    try:
      tok.add_special_tokens(missing)
    except ValueError as e:  # sentencepiece cannot grow: the tags stay multi-piece
      log.warning("foresight tags stay multi-token (%s): %s", tok.source, e)
  return tok


def make_tokenizer(cfg, trajs: Sequence[Trajectory] | None, init_path: str, workdir: str) -> Tokenizer | None:
  """The run's tokenizer. A saved `<workdir>/tokenizer` wins (a resumed run never retrains or
  re-grows it). With train_sentencepiece and `trajs=None`, returns None (not trained yet)."""
  saved = os.path.join(workdir, "tokenizer")
  if os.path.isdir(saved):
    return Tokenizer.load(saved)
  d = cfg.data
  if d.tokenizer == TRAIN_SENTENCEPIECE:
    if trajs is None:
      return None
    from foresight_jax.tokenizer import train_sentencepiece
    # every host trains the same one in memory (deterministic); process 0 saves it
    texts = rendered_texts(trajs, cfg)
    if cfg.stage == "pretrain" and d.synthetic:
      texts += _tokenizer_coverage(cfg)
    try:
      return train_sentencepiece(texts, None, d.vocab_size)
    except ValueError as e:  # e.g. too little text for the vocabulary asked for
      raise ConfigError(f"data.vocab_size={d.vocab_size}: {e}") from None
  tok = Tokenizer.load(d.tokenizer or init_path)
  return add_foresight_tokens(tok) if cfg.model.add_foresight_tokens else tok


def _tokenizer_coverage(cfg) -> list[str]:
  """Rendered synthetic trajectories (raw and chat, blocks of data.variant), so a tokenizer
  trained for `pretrain` also tokenizes the later stages' text compactly (not trained on)."""
  from foresight_jax.data.foresight import ForesightConfig, build_dataset
  from foresight_jax.data.generate import GenConfig, generate, make_worlds
  d = cfg.data
  gcfg = GenConfig(seed=d.seed, n_worlds=max(1, min(d.documents, 64)))
  worlds = make_worlds(gcfg)
  trajs = build_dataset(list(generate(gcfg, d.synthetic, worlds=worlds)), ForesightConfig(variant=d.variant), worlds)
  raw = ["".join(sg.text for sg in render_segments(t, d.variant)) for t in trajs]
  from foresight_jax.tokenizer.chat import render_chat
  chat = [render_chat(chat_messages(t, "plain", d.variant), "plain", add_generation_prompt=False) for t in trajs]
  return raw + chat


def check_trainable(trajs: Sequence[Trajectory], tok: Tokenizer, cfg, sample: int = 16) -> None:
  """A row length that leaves nothing to train (e.g. an SFT prompt longer than seq_len) would
  make the packer drop every example and spin forever; fail here, naming the key."""
  d = cfg.data
  if cfg.stage == "pretrain":  # every document token is trained
    return
  lengths = []
  for t in trajs[:sample]:
    ex = (tokenize_chat(t, tok, d.mode, d.variant) if d.chat_format else
          pipeline.tokenize_trajectory(t, tok, d.mode, d.variant))
    lengths.append(len(ex["tokens"]))
    if ex["loss_mask"][1:d.seq_len].sum() > 0:
      return
  raise ConfigError(f"data.seq_len={d.seq_len}: none of the first {len(lengths)} examples has a trained "
                    f"token within the row (token lengths {lengths[:5]}...); raise data.seq_len")


# ------------------------------------------------------------------------------ iterators
class TokenizeDocument(grain.transforms.Map):
  """A document -> {"tokens": BOS + ids + EOS, "loss_mask": every token trained}."""

  def __init__(self, tok: Tokenizer):
    self.tok = tok

  def map(self, text: str) -> dict[str, Any]:
    ids = self.tok.encode(text, add_bos=self.tok.bos_id is not None) + list(self.tok.eos_ids[:1])
    return {"tokens": np.asarray(ids, np.int32), "loss_mask": np.ones(len(ids), np.int32)}


def _build(trajs, tok, pcfg: pipeline.PipelineConfig, chat: bool, documents: bool = False) -> grain.IterDataset:
  if not chat and not documents:
    return pipeline.build_pipeline(pipeline.MemorySource(trajs), tok, pcfg)
  # pipeline.build_pipeline with the chat (or document) tokenization in place of TokenizeRecord
  if documents:
    src = grain.MapDataset.source(list(trajs))
    index, count = pcfg.shard()
    src = src[index::count] if count > 1 else src
    src = src.shuffle(seed=pcfg.seed) if pcfg.shuffle else src
    ds = (src.repeat(pcfg.num_epochs) if pcfg.num_epochs != 1 else src).map(TokenizeDocument(tok))
  else:
    ds = pipeline.source_dataset(pipeline.MemorySource(trajs), pcfg).map(
        ChatTokenizeRecord(tok, pcfg.mode, pcfg.variant, pcfg.record_field, pcfg.slip_rate, pcfg.seed))
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=pcfg.read_threads,
                                            prefetch_buffer_size=max(4 * pcfg.read_threads, 1)))
  ds = LengthPolicyIterDataset(ds, pcfg.seq_len, pcfg.overlong)
  ds = pipeline.PACKERS[pcfg.packing](ds, length_struct={"tokens": pcfg.seq_len, "loss_mask": pcfg.seq_len},
                                      num_packing_bins=pcfg.num_packing_bins or 4 * pcfg.batch_size,
                                      seed=pcfg.seed, shuffle_bins=pcfg.shuffle_bins)
  ds = ds.map(ShiftPackedRow(tok.pad_id))
  return ds.batch(pcfg.batch_size, drop_remainder=pcfg.drop_remainder,
                  batch_fn=PadBatch(pcfg.batch_size, pcfg.seq_len, tok.pad_id))


def _allgather_json(obj: Any) -> list[Any]:
  """Every process's JSON-able `obj`, in process order (a collective: all processes call it)."""
  from jax.experimental import multihost_utils
  raw = np.frombuffer(json.dumps(obj).encode(), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.asarray([raw.size], np.int32))).reshape(-1)
  buf = np.zeros(int(sizes.max()), np.uint8)
  buf[:raw.size] = raw
  rows = np.asarray(multihost_utils.process_allgather(buf))
  return [json.loads(rows[i, :int(n)].tobytes().decode()) for i, n in enumerate(sizes)]


class DataState:
  """Wraps an iterator of per-host rows; owns the checkpointed data state (see module doc)."""

  def __init__(self, it, host_sharding: str, rows: slice | None = None):
    self.it, self.host_sharding, self.rows = it, host_sharding, rows

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self.it)
    return batch if self.rows is None else {k: v[self.rows] for k, v in batch.items()}

  def get_state(self) -> dict[str, Any]:
    import jax
    state = self.it.get_state()
    if self.host_sharding == "slice":  # identical on every process
      return {"host_sharding": "slice", "state": state}
    states = _allgather_json(state) if jax.process_count() > 1 else [state]
    return {"host_sharding": "source", "process_count": len(states), "states": states}

  def set_state(self, saved: dict[str, Any]) -> None:
    import jax
    if saved.get("host_sharding") != self.host_sharding:
      raise ConfigError(f"data.host_sharding={self.host_sharding!r}, but the checkpoint's data state is "
                        f"{saved.get('host_sharding')!r}: resume with the same value")
    if self.host_sharding == "slice":
      self.it.set_state(saved["state"])
      return
    if saved["process_count"] != jax.process_count():
      raise ConfigError(f"the checkpoint was written by {saved['process_count']} processes with "
                        f"data.host_sharding='source'; resume with as many processes")
    self.it.set_state(saved["states"][jax.process_index()])


def pipeline_config(cfg, *, eval_: bool = False) -> pipeline.PipelineConfig:
  import jax
  d = cfg.data
  n = jax.process_count()
  slice_mode = d.host_sharding == "slice"
  return pipeline.PipelineConfig(
      mode=d.mode, seq_len=d.seq_len, batch_size=d.batch_size if slice_mode else d.batch_size // n,
      overlong=d.overlong, packing=d.packing, seed=d.seed + (7919 if eval_ else 0),
      shuffle=not eval_, num_epochs=None if (eval_ or not d.num_epochs) else d.num_epochs,
      variant=d.variant, read_threads=d.read_threads, slip_rate=0.0 if eval_ else d.slip_rate,
      shard_index=0 if slice_mode else None, shard_count=1 if slice_mode else None)


def make_iterator(trajs: Sequence[Trajectory], tok: Tokenizer, cfg, *, eval_: bool = False) -> DataState:
  """This process's rows of each global batch. Eval streams repeat, so every process yields the
  same number of batches (a process running dry inside a collective would hang the rest)."""
  from foresight_jax import sharding
  pcfg = pipeline_config(cfg, eval_=eval_)
  it = iter(_build(list(trajs), tok, pcfg, cfg.data.chat_format, documents=cfg.stage == "pretrain"))
  rows = sharding.host_local_batch_slice(cfg.data.batch_size) if cfg.data.host_sharding == "slice" else None
  return DataState(it, cfg.data.host_sharding, rows)


__all__ = ["ChatTokenizeRecord", "DataState", "TokenizeDocument", "load_documents", "add_foresight_tokens", "chat_messages", "chat_segments",
           "check_trainable", "load_trajectories", "make_iterator", "make_tokenizer", "pipeline_config",
           "rendered_texts", "tokenize_chat"]
