"""Sampling: the pure in-graph core (prefill, while_loop decode, extend) and the host `generate`.

`core.py` holds everything that runs inside a jitted step (an RL rollout composes it with tools
and rewards); `host.py` holds what needs Python (tokenizers, stop strings as text).
"""
from foresight_jax.sampling.core import (STOP_EOS, STOP_LENGTH, STOP_NONE, STOP_REASON_NAMES, STOP_SEQUENCE,
                                         SampleOutput, SamplerState, SamplingParams, StopSpec, cache_length,
                                         constrain_cache, decode, decode_jit, extend, extend_jit, prefill,
                                         prefill_jit, prompt_positions, sample, sample_jit, sample_logits)
from foresight_jax.sampling.host import (DEFAULT_STOP_PREFIXES, GenerateResult, generate, make_stop_spec,
                                         stop_string_variants)

__all__ = ["DEFAULT_STOP_PREFIXES", "GenerateResult", "STOP_EOS", "STOP_LENGTH", "STOP_NONE",
           "STOP_REASON_NAMES", "STOP_SEQUENCE", "SampleOutput", "SamplerState", "SamplingParams", "StopSpec",
           "cache_length", "constrain_cache", "decode", "decode_jit", "extend", "extend_jit", "generate",
           "make_stop_spec", "prefill", "prefill_jit", "prompt_positions", "sample", "sample_jit",
           "sample_logits", "stop_string_variants"]
