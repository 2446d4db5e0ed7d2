"""Test set-up: 8 forced host devices (so sharded tests run on this CPU) and fp32 matmuls."""
import os

# Must be set before jax initialises its backend; single-device tests simply use device 0.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import jax  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: long-running; excluded from the default `make test`")
