"""The token layout every FC-RL piece shares: what the rollout writes, what rewards read, what
the loss masks.

A rollout batch is a set of compacted rows (the KV cache's gaps removed, see rollout.py):

    tokens [B, S] int32   prompt, then turn 1, its observation, turn 2, ... ; pad after the end
    kind   [B, S] int32   KIND_* below, one per token
    turn   [B, S] int32   0-based turn index of a GEN or OBS token (an observation belongs to the
                          turn whose action it answers); -1 for PROMPT and PAD tokens

Only KIND_GEN tokens are ever trained on (policy loss, KL, entropy); observations are read by
the model (and by the grounding reward) but masked from every loss term, as Search-R1 does.
"""
KIND_PAD = 0
KIND_PROMPT = 1
KIND_GEN = 2    # sampled by the policy
KIND_OBS = 3    # written by a tool: `<information> ... </information>` and the whitespace around it
