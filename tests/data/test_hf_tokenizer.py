import json
import pickle

import pytest
import tokenizers
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import decoders, models, pre_tokenizers, trainers

from lnemo.data import HFTokenizer, Tokenizer, text_pipeline

SPECIALS = ["<s>", "</s>", "<pad>", "<think>", "</think>"]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(["What is 3+4?\n3+4=7\nAnswer: 7", "hello world"] * 20, trainer=trainer)
    path = tmp_path_factory.mktemp("hf")
    tok.save(str(path / "tokenizer.json"))
    config = {"bos_token": {"content": "<s>"}, "eos_token": "</s>", "pad_token": "<pad>"}
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    return HFTokenizer.from_file(tokenizer_dir)


def test_reads_special_ids_from_config(tok, tokenizer_dir):
    assert isinstance(tok, Tokenizer)
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2)
    assert tok.special_tokens == {s: i for i, s in enumerate(SPECIALS)}
    assert tok.token_id("<think>") == 3
    raw = tokenizers.Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    assert tok.vocab_size == raw.get_vocab_size(with_added_tokens=True) > 256


def test_explicit_names_and_pad_fallback(tokenizer_dir):
    tok = HFTokenizer.from_file(tokenizer_dir / "tokenizer.json", bos_token="</s>", eos_token="<think>")
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (1, 3, 2)  # pad from the config
    (tokenizer_dir / "bare").mkdir(exist_ok=True)
    (tokenizer_dir / "bare" / "tokenizer.json").write_text((tokenizer_dir / "tokenizer.json").read_text())
    tok = HFTokenizer.from_file(tokenizer_dir / "bare", bos_token="<s>", eos_token="</s>")
    assert tok.pad_id == tok.eos_id == 1


def test_literal_specials_only_with_allow_special(tok):
    assert tok.encode("<think>7</think>", allow_special=True)[0] == 3
    plain = tok.encode("<think>7</think>")
    assert not set(plain) & set(tok.special_tokens.values())
    assert tok.decode(plain) == "<think>7</think>"
    assert tok.decode([0, *tok.encode("hi"), 1], skip_special=True) == "hi"


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=40))
def test_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_errors(tokenizer_dir, tok):
    (tokenizer_dir / "noconfig").mkdir(exist_ok=True)
    (tokenizer_dir / "noconfig" / "tokenizer.json").write_text((tokenizer_dir / "tokenizer.json").read_text())
    with pytest.raises(ValueError, match="bos_token"):
        HFTokenizer.from_file(tokenizer_dir / "noconfig", eos_token="</s>")
    with pytest.raises(ValueError, match="eos_token='<eot>'"):
        HFTokenizer.from_file(tokenizer_dir, eos_token="<eot>")
    with pytest.raises(FileNotFoundError, match="missing"):
        HFTokenizer.from_file(tokenizer_dir / "missing.json")
    with pytest.raises(ValueError, match=f"token id {tok.vocab_size}"):
        tok.decode([tok.vocab_size])
    with pytest.raises(KeyError, match="<tool>"):
        tok.token_id("<tool>")


def test_pickles_and_feeds_a_pipeline(tok):
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode("hello world") == tok.encode("hello world")
    import grain

    batch = next(iter(text_pipeline(["hello world"], tok, seq_len=8, batch_size=1, shard=grain.sharding.NoSharding())))
    n = len(tok.encode("hello world")) + 2
    assert batch["tokens"][0, 0] == tok.bos_id and batch["tokens"][0, n - 1] == tok.eos_id
    assert (batch["tokens"][0, n:] == tok.pad_id).all()
