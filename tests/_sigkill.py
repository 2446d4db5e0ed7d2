"""Kill a training run with SIGKILL right after a checkpoint is on disk (the resume tests of the
trainer stages and of FC-RL share it)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

# Runs the CLI trainer with a per-step hook in `loop.run` (every stage goes through it) that waits,
# from step 3 on, until checkpoint 2 is committed (orbax renames its tmp dir to `2` only once all of
# it is on disk), says so, and sleeps: the caller SIGKILLs it there. The hook only waits: no number
# changes.
PAUSE_AFTER_CHECKPOINT = textwrap.dedent("""
    import os, sys, time
    from foresight_jax.train import cli_train, loop
    run = loop.run

    def paused(program, tcfg, data_iter, workdir, mesh, **kw):
      kw.pop("on_step_end", None)  # `loop.train` passes None; the stages set no hook of their own

      def hook(rec):
        if rec["step"] >= 3:
          t = time.time()
          while not os.path.isdir(os.path.join(workdir, "checkpoints", "2")) and time.time() - t < 120:
            time.sleep(0.05)
          print(f"PAUSED after step {rec['step']}", flush=True)
          time.sleep(600)
      return run(program, tcfg, data_iter, workdir, mesh, on_step_end=hook, **kw)

    loop.run = paused
    sys.exit(cli_train.main(sys.argv[1:]))
""")


def kill_after_checkpoint(args: list[str], env: dict, cwd: str) -> int:
  """Start `foresight-jax train ARGS` under the pausing hook, SIGKILL it once it pauses, and return
  the step it had logged when killed."""
  proc = subprocess.Popen([sys.executable, "-c", PAUSE_AFTER_CHECKPOINT, *args], env=env, cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    line = ""
    for line in proc.stdout:  # blocks until the hook pauses (or the run ends: a failure)
      if line.startswith("PAUSED"):
        break
    assert line.startswith("PAUSED"), f"rc={proc.wait(30)}: run ended unpaused\n{proc.stderr.read()[-3000:]}"
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
  assert proc.returncode == -signal.SIGKILL
  return int(line.split()[-1])


def read_metrics(workdir) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as fh:
    return [json.loads(line) for line in fh]
