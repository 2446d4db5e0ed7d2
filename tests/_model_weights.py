"""Test weights for mixed-precision checks (imported by test_model.py and test_train.py)."""
import jax
import numpy as np

from foresight_jax.models import params as params_lib


def order10_params(cfg, seed=3, logit_scale=5.0):
  """Random weights whose logits have std ~5 and reach ~20 (the init's are ~0.5, where bf16's
  error hides under any loose bound): matrices normal / sqrt(fan-in), norms 1 + 0.2 noise, biases
  0.2 noise, the final norm scaled by `logit_scale`. Drawn with numpy (no per-shape compiles)."""
  shapes = jax.eval_shape(lambda k: params_lib.init_params(cfg, k), jax.random.key(seed))
  leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  rng = np.random.default_rng(seed)
  out = []
  for path, x in leaves:
    name, n = jax.tree_util.keystr(path), rng.standard_normal(x.shape)
    if "norm" in name:
      w = 1.0 + 0.2 * n
    elif len(x.shape) <= 1 + name.startswith("['layers']"):  # biases
      w = 0.2 * n
    elif name == "['embed']":  # when tied, also the LM head: scaled like one
      w = n / np.sqrt(x.shape[1]) if cfg.tie_embeddings else n
    elif name.startswith("['layers']"):  # [L, in..., out...]: o is [L, heads, head_dim, D]
      w = n / np.sqrt(x.shape[1] * (x.shape[2] if name.endswith("['o']") else 1))
    else:
      w = n / np.sqrt(x.shape[0])
    if name == "['final_norm']":
      w = w * logit_scale
    out.append(jax.numpy.asarray(w, x.dtype))
  return jax.tree_util.tree_unflatten(treedef, out)
