"""Process settings that must exist before the interpreter starts: glibc's huge pages for XLA:CPU.

Why: XLA:CPU allocates each executable's temporary buffer (tens of MB for a training step) with
glibc malloc on every call. From a worker thread's arena, a buffer that large is mmapped and
unmapped each call, so every step touches fresh pages: the tiny preset's training step at seq 512
took 16,700 page faults and ~55 ms of system time out of ~110 ms (BUILD_NOTES, "Huge pages for
XLA:CPU's step buffers"). glibc >= 2.35 advises its mapped chunks for transparent huge pages
when the tunable `glibc.malloc.hugetlb=1` is set: ~350 faults a step; the tiny step ~1.5x faster,
the demo model's ~1.15x, no measurable change at SmolLM2-135M size.
Tunables are read only when a process starts, so the command-line entry points re-execute
themselves once with the tunable added (`reexec_with_huge_pages`); nothing changes inside a
process that imports the library.

Opt out with FORESIGHT_JAX_NO_HUGEPAGES=1; a GLIBC_TUNABLES that already names
glibc.malloc.hugetlb is left as it is.
"""
from __future__ import annotations

import os
import platform
import sys

TUNABLE = "glibc.malloc.hugetlb=1"
OPT_OUT = "FORESIGHT_JAX_NO_HUGEPAGES"
THP_SWITCH = "/sys/kernel/mm/transparent_hugepage/enabled"


def _thp_usable() -> bool:
  """Transparent huge pages in `always` or `madvise` mode (glibc's tunable only madvises)."""
  try:
    with open(THP_SWITCH) as fh:
      return "[never]" not in fh.read()
  except OSError:
    return False


def huge_page_env(env: dict | None = None) -> dict:
  """`env` (default os.environ) with the tunable added where it applies: Linux, glibc, THP usable,
  no opt-out, and no hugetlb setting of the user's own. Used for child processes too."""
  env = dict(os.environ if env is None else env)
  tunables = env.get("GLIBC_TUNABLES", "")
  if (sys.platform != "linux" or env.get(OPT_OUT) or "glibc.malloc.hugetlb" in tunables
      or platform.libc_ver()[0] != "glibc" or not _thp_usable()):
    return env
  env["GLIBC_TUNABLES"] = ":".join(t for t in (tunables, TUNABLE) if t)
  return env


def reexec_with_huge_pages() -> None:
  """Re-execute this process (same interpreter, same argv) with the tunable, once; returns
  without doing anything when it is already set or does not apply. Call it first thing in a
  `__main__`, never from library code or tests: it replaces the running process."""
  env = huge_page_env()
  if env.get("GLIBC_TUNABLES") == os.environ.get("GLIBC_TUNABLES"):
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
