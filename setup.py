"""foresight_jax: train LLM agents to forecast before they act (JAX/Flax)."""
from setuptools import find_packages, setup

CORE = [
    "jax>=0.4.35",
    "jaxlib>=0.4.35",
    "flax>=0.10.0",
    "optax>=0.2.3",
    "orbax-checkpoint>=0.9.0",
    "grain>=0.2.12",  # grain.experimental FirstFit/BestFit packing, top-level MapDataset
    "tensorflow-datasets>=4.9.6",
    "sentencepiece>=0.2.0",
    "ml-collections>=0.1.1",
    "safetensors>=0.4.3",
    "tokenizers>=0.19.1",
    "jinja2>=3.1.6",  # checkpoints' own chat templates (sandboxed; older versions have sandbox escapes)
    "numpy>=1.26",
    "gguf>=0.10.0",  # GGUF import is part of the public load_pretrained API
    "absl-py>=2.0",
    "tqdm>=4.66",
    "tensorboardX>=2.6",  # TensorBoard event files without TensorFlow
    "math-verify==0.9.0",  # eval: symbolic answer check next to the boxed-integer one (evals/qa.py)
    "matplotlib>=3.8",  # PNG figures embedded in the offline audit report (`foresight-jax report`)
]

TEST = [
    "pytest>=8.0",
    "pytest-xdist>=3.5",  # `make test` runs two workers: serial compiles leave a core idle
    "torch==2.13.0",  # exact: the local CPU wheel; any other version pulls GBs of CUDA
    "transformers>=5.0",
    "psutil>=5.9",
    "accelerate>=1.0",  # transformers needs it for from_pretrained(gguf_file=...)
    "sentence-transformers>=3.0",  # reference embeddings for the dense-retriever parity test
]

setup(
    name="foresight_jax",
    version="0.1.0",
    description="JAX/Flax pipeline that trains LLM agents to forecast before they act",
    packages=find_packages(include=["foresight_jax", "foresight_jax.*"]),
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require={"test": TEST},
    entry_points={"console_scripts": ["foresight-jax=foresight_jax.cli:entry"]},
)
