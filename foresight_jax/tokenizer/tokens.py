"""Special-token constants shared by the tokenizer package (no state, no imports)."""

# The foresight block's tags (design.md §1), defined ONCE: the tokenizer makes each a single
# token/piece wherever it can (`train_sentencepiece` as user-defined symbols,
# `Tokenizer.add_special_tokens` for a tokenizer.json vocabulary), the renderer and parser
# (data/render.py) build their regexes from TAG_NAMES, and the in-graph rewards (rl/) look the
# same strings up as token ids.
ACTION_TAGS = ("search", "calc", "answer")  # exactly one per turn; search/calc call a tool
TOOL_TAGS = ("search", "calc")
TAG_NAMES = ("think", "foresight", "rollout", "success") + ACTION_TAGS + ("information",)
FORESIGHT_TOKENS = tuple(t for name in TAG_NAMES for t in (f"<{name}>", f"</{name}>"))

# Role markers of the "plain" chat format used with our own sentencepiece tokenizers;
# `train_sentencepiece` always adds them as user-defined symbols too.
PLAIN_CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "<|end|>")

# Ids of the control pieces in tokenizers trained by `train_sentencepiece`.
SP_PAD_ID, SP_UNK_ID, SP_BOS_ID, SP_EOS_ID = 0, 1, 2, 3

# Tokens that end a turn or a document in the families we know; whichever of these a vocabulary
# has are added to `Tokenizer.eos_ids` (after the tokenizer's own EOS) so generation stops on them.
END_OF_TURN_TOKENS = (
    "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|end|>",
)
