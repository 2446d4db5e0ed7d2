"""`foresight-jax train`: run a training stage from an ml-collections config file.

usage:
  foresight-jax train --config configs/wm_amt.py[:SIZE] [--config.KEY=VALUE ...] [--dry_run]
  foresight-jax train --config configs/fe_sft.py[:SIZE] [--config.KEY=VALUE ...] [--dry_run]

SIZE is tiny (from scratch, CPU-friendly), smollm2_135m (SmolLM2-135M GGUF import) or
youtu_llm_2b (Youtu-LLM-2B HF dir: --config.model.init_from=DIR). Any config key can be
overridden, e.g.

  foresight-jax train --config configs/wm_amt.py:tiny --config.data.variant=state \\
      --config.data.seq_len=256 --config.train.steps=50 --config.workdir=runs/wm_state

Stages: WM-AMT (configs/wm_amt.py) mid-trains on foresight-augmented trajectories, FE-SFT
(configs/fe_sft.py) fine-tunes the WM-AMT export (<workdir>/hf) on chat-formatted tasks.
Keys and defaults: foresight_jax/train/stages_config.py.

Everything that can be checked before compute is checked first, and errors name the key or path:
unknown keys, bad values, missing/empty data files, a mesh that does not divide the devices, a
batch the devices cannot hold, a workdir checkpoint from another model shape (exit code 2).
Re-running the same command resumes from <workdir>/checkpoints; SIGTERM saves and exits 0.
Output: <workdir>/{metrics.jsonl, tb/, checkpoints/, tokenizer/, stage_config.json, hf/}.

Multi-host: run the same command on every host (one process per host or per GPU); see
launch/README.md. jax.distributed is initialised from --config.distributed.* (coordinator,
process count and id), or detected (SLURM; --config.distributed.mode=on on TPU pods).

flags:
  --config       the config file, PATH[:SIZE]
  --config.KEY   override one key (dotted path), e.g. --config.optim.learning_rate=1e-4
  --dry_run      validate and print the plan (params, mesh, memory estimate) without training
  --log_level    python logging level (default WARNING)
"""
from __future__ import annotations

import logging
import re
import sys

from absl import flags

from foresight_jax.train.stages_config import ConfigError

USAGE = __doc__


def _check_override_keys(argv: list[str]) -> None:
  """config_flags reports an unknown `--config.a.b` as a bare KeyError('b'); name the full key
  and what exists at that level instead (the file itself is loaded without overrides)."""
  from foresight_jax import configs
  spec, overrides = None, []
  for i, a in enumerate(argv):
    if a.startswith("--config=") or a == "--config":
      spec = a.partition("=")[2] or (argv[i + 1] if i + 1 < len(argv) else "")
    m = re.match(r"--(?:no)?config\.([^=]+)", a)
    if m:
      overrides.append(m.group(1))
  if spec is None:
    raise ConfigError("--config is required, e.g. --config configs/wm_amt.py:tiny (see --help)")
  try:
    cfg = configs.load(spec)
  except (OSError, ValueError) as e:  # a missing file, no get_config(), an unknown size
    raise ConfigError(f"--config {spec}: {e}") from None
  for key in overrides:
    node, parts = cfg, key.split(".")
    for depth, name in enumerate(parts):
      if not hasattr(node, "keys") or name not in node:
        where = ".".join(parts[:depth]) or "the top level"
        known = sorted(node.keys()) if hasattr(node, "keys") else []
        raise ConfigError(f"--config.{key}: config key {key!r} does not exist (no {name!r} under "
                          f"{where}; known: {known})")
      node = node[name]


def parse(argv: list[str]):
  """(config, dry_run) from `train` arguments (absl flags + ml_collections config_flags)."""
  from ml_collections import config_flags
  _check_override_keys(argv)
  fv = flags.FlagValues()  # a private registry: parsing twice in one process (tests) is safe
  full = ["foresight-jax train"] + list(argv)
  config_flags.DEFINE_config_file("config", None, "config file PATH[:SIZE]", flag_values=fv,
                                  lock_config=True, sys_argv=full)
  flags.DEFINE_bool("dry_run", False, "validate and plan only", flag_values=fv)
  flags.DEFINE_string("log_level", "WARNING", "python logging level", flag_values=fv)
  try:
    fv(full)
  except flags.Error as e:
    raise ConfigError(str(e)) from None
  return fv.config, fv.dry_run, fv.log_level


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or any(a in ("-h", "--help", "--helpfull") for a in argv):
    print(USAGE)
    return 0
  from foresight_jax.train import loop
  from foresight_jax.train.checkpoint import CheckpointMismatchError
  from foresight_jax.models.checkpoint import CheckpointError
  try:
    cfg, dry_run, level = parse(argv)
    logging.basicConfig(level=getattr(logging, level.upper(), logging.WARNING),
                        format="%(levelname)s %(name)s: %(message)s")
    # grain worker processes (data.read_threads / mp) expect absl flags to be parsed
    flags.FLAGS.mark_as_parsed()
    from foresight_jax.train import stages
    out = stages.run(cfg, dry_run=dry_run)
    if dry_run:
      import json
      print(json.dumps(out), flush=True)
  except (ConfigError, CheckpointMismatchError, CheckpointError) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 2
  except loop.NonFiniteError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 3
  return 0


if __name__ == "__main__":
  sys.exit(main())
