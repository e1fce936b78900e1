import json

import numpy as np
import pytest
import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from lnemo.data import ByteTokenizer, HFTokenizer
from lnemo.sft import ChatFormat, chat_messages, encode_chat, prompt_ids, reasoning_response, render, system_prompt

TOK = ByteTokenizer()


def test_system_prompts_and_responses():
    assert system_prompt(True) == "detailed thinking on" and system_prompt(False) == "detailed thinking off"
    assert reasoning_response("Answer: 7", trace="3+4=7", thinking=True) == "<think>3+4=7</think>Answer: 7"
    assert reasoning_response("Answer: 7", trace="3+4=7", thinking=False) == "Answer: 7"
    with pytest.raises(ValueError, match="trace"):
        reasoning_response("Answer: 7", trace=None, thinking=True)


def test_byte_tokens_and_trained_mask():
    ex = encode_chat(chat_messages("Hi <|end|>", "<think>t</think>A", thinking=True), TOK)
    tokens, mask = ex["tokens"], ex["target_mask"]
    # user text is data: its literal "<|end|>" stays bytes
    assert list(tokens[:3]) == [TOK.system_id, *TOK.encode("d")[:1], *TOK.encode("e")[:1]]
    assert TOK.decode(tokens) == "<|system|>detailed thinking on<|end|><|user|>Hi <|end|><|end|><|assistant|><think>t</think>A<|end|>"
    assert (tokens == TOK.end_id).sum() == 3
    trained = tokens[mask].tolist()
    assert trained == [TOK.think_start_id, ord("t"), TOK.think_end_id, ord("A"), TOK.end_id]
    assert mask[-5:].all() and not mask[:-5].any()


def test_off_mode_has_no_think_tokens_and_generation_prompt():
    ex = encode_chat(chat_messages("Q", "Answer: 1", thinking=False), TOK)
    assert TOK.think_start_id not in ex["tokens"] and TOK.think_end_id not in ex["tokens"]
    ids = prompt_ids("Q", TOK, thinking=False)
    assert TOK.decode(ids) == "<|system|>detailed thinking off<|end|><|user|>Q<|end|><|assistant|>"
    assert ids == ex["tokens"][:len(ids)].tolist()


def test_bad_messages_raise():
    with pytest.raises(ValueError, match="role='tool'"):
        encode_chat([{"role": "tool", "content": "x"}], TOK)
    with pytest.raises(ValueError, match=r"messages\[0\]"):
        encode_chat([{"role": "user"}], TOK)


@pytest.fixture(scope="module")
def hf_tok(tmp_path_factory):
    specials = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<think>", "</think>",
                "<pad>"]
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["What is 3+4?\n3+4=7\nAnswer: 7 detailed thinking on off system user assistant"] * 20,
                            trainer=trainer)
    path = tmp_path_factory.mktemp("hf")
    tok.save(str(path / "tokenizer.json"))
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "pad_token": "<pad>"}))
    return HFTokenizer.from_file(path)


def test_llama3_format_with_a_hugging_face_tokenizer(hf_tok):
    fmt = ChatFormat.llama3()
    messages = chat_messages("What is 3+4?", "<think>3+4=7</think>Answer: 7", thinking=True)
    ex = encode_chat(messages, hf_tok, fmt=fmt)
    text = render(messages, fmt=fmt)
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\ndetailed thinking on<|eot_id|>")
    assert hf_tok.decode(ex["tokens"].tolist()) == text
    trained = ex["tokens"][ex["target_mask"]].tolist()
    assert trained[0] == hf_tok.token_id("<think>") and trained[-1] == hf_tok.token_id("<|eot_id|>")
    assert hf_tok.decode(trained) == "<think>3+4=7</think>Answer: 7<|eot_id|>"
    assert np.sum(ex["target_mask"]) == len(trained) < len(ex["tokens"])
