"""The huge-page re-exec of the command-line entry points (foresight_jax/hostenv.py)."""
import os
import subprocess
import sys

import pytest

from foresight_jax import hostenv

PROBE = ("from foresight_jax import hostenv; import os, sys; hostenv.reexec_with_huge_pages(); "
         "print(os.environ.get('GLIBC_TUNABLES', '')); print(' '.join(sys.argv[1:]))")


def _run(env):
  out = subprocess.run([sys.executable, "-c", PROBE, "a", "b c"], env=env, check=True, capture_output=True,
                       text=True).stdout.splitlines()
  return out[0], out[1]


def test_huge_page_env_adds_the_tunable_once_and_respects_the_user():
  applies = hostenv.huge_page_env({})  # {} has no opt-out and no tunables of its own
  if "GLIBC_TUNABLES" not in applies:
    pytest.skip("no glibc or transparent huge pages off on this host")
  assert applies["GLIBC_TUNABLES"] == hostenv.TUNABLE
  kept = hostenv.huge_page_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
  assert kept["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:" + hostenv.TUNABLE
  own = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
  assert hostenv.huge_page_env(own) == own  # the user's own hugetlb setting wins
  assert "GLIBC_TUNABLES" not in hostenv.huge_page_env({hostenv.OPT_OUT: "1"})


def test_reexec_sets_the_tunable_and_keeps_the_arguments():
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", hostenv.OPT_OUT)}
  if "GLIBC_TUNABLES" not in hostenv.huge_page_env(env):
    pytest.skip("no glibc or transparent huge pages off on this host")
  tunables, args = _run(env)
  assert tunables == hostenv.TUNABLE and args == "a b c"
  tunables, args = _run({**env, hostenv.OPT_OUT: "1"})
  assert tunables == "" and args == "a b c"
