"""Test set-up: 8 forced host devices (so sharded tests run on this CPU) and fp32 matmuls."""
import os

# Must be set before jax initialises its backend; single-device tests simply use device 0.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The suite's time is mostly XLA compiling small programs that then run for milliseconds, so compile
# them with LLVM's backend optimisation off (O0, no expensive passes; XLA's HLO passes, hence every
# op and fusion, are unchanged). Set here, so subprocesses the tests start inherit it too.
# `JAX_DISABLE_MOST_OPTIMIZATIONS=0 make test` runs the suite on fully optimised code.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
# A persistent compilation cache for this pytest process only (not inherited by subprocesses, which
# set their own): tests that build the same step again (a resumed loop, a second mesh of the same
# shape) load the compiled executable instead of compiling it again. A cached executable is the
# one a fresh compile produces, so no figure a test compares can change.
_CACHE = tempfile.mkdtemp(prefix="foresight_jax_test_jit_cache_")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: long-running; excluded from the default `make test`")
