"""Special-token constants shared by the tokenizer package (no state, no imports)."""

# The foresight block's tags (design.md §1). Each must be one token/piece wherever the tokenizer
# allows it: `train_sentencepiece` makes them user-defined symbols, `Tokenizer.add_special_tokens`
# adds them to a tokenizer.json vocabulary.
FORESIGHT_TOKENS = (
    "<think>", "</think>",
    "<foresight>", "</foresight>",
    "<rollout>", "</rollout>",
    "<success>", "</success>",
    "<search>", "</search>",
    "<information>", "</information>",
    "<answer>", "</answer>",
)

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
