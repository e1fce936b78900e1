import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lnemo.data import ByteTokenizer, Tokenizer
from lnemo.data import tokenizer as tokenizer_module

TOK = ByteTokenizer()
SPECIAL_STRINGS = st.sampled_from(sorted(TOK.special_tokens))
TEXT_WITH_SPECIALS = st.lists(st.one_of(st.text(max_size=20), SPECIAL_STRINGS), max_size=8).map("".join)


def test_layout_is_small_and_aligned():
    assert TOK.vocab_size == 272 and TOK.vocab_size % 16 == 0
    assert len(TOK.special_tokens) == TOK.vocab_size - 256
    assert sorted(TOK.special_tokens.values()) == list(range(256, TOK.vocab_size))
    named = {
        tokenizer_module.PAD: TOK.pad_id,
        tokenizer_module.BOS: TOK.bos_id,
        tokenizer_module.EOS: TOK.eos_id,
        tokenizer_module.SYSTEM: TOK.system_id,
        tokenizer_module.USER: TOK.user_id,
        tokenizer_module.ASSISTANT: TOK.assistant_id,
        tokenizer_module.END: TOK.end_id,
        "<think>": TOK.think_start_id,
        "</think>": TOK.think_end_id,
    }
    for token, token_id in named.items():
        assert TOK.token_id(token) == token_id
    assert len(set(named.values())) == len(named)


def test_satisfies_protocol():
    assert isinstance(TOK, Tokenizer)


def test_hand_encoding():
    assert TOK.encode("hé") == [104, 0xC3, 0xA9]
    assert TOK.encode("<think>a</think>", allow_special=True) == [263, 97, 264]
    assert TOK.encode("<think>") == list(b"<think>")


@given(st.text())
def test_round_trip_any_text(text):
    ids = TOK.encode(text)
    assert all(0 <= i < 256 for i in ids)
    assert TOK.decode(ids) == text


@given(TEXT_WITH_SPECIALS)
def test_round_trip_with_specials(text):
    assert TOK.decode(TOK.encode(text, allow_special=True)) == text
    assert TOK.decode(TOK.encode(text)) == text


def test_specials_split_from_surrounding_text():
    text = "<|system|>detailed thinking on<|end|><|user|>Σ?<|end|><|assistant|><think>x</think>y<|end|>"
    ids = TOK.encode(text, allow_special=True)
    assert [i for i in ids if i >= 256] == [259, 262, 260, 262, 261, 263, 264, 262]
    assert TOK.decode(ids, skip_special=True) == "detailed thinking onΣ?xy"


def test_every_id_decodes_and_invalid_bytes_are_replaced():
    assert isinstance(TOK.decode(range(TOK.vocab_size)), str)
    assert TOK.decode([0xC3]) == "\ufffd"
    # A special token between the two bytes of a character breaks it.
    assert TOK.decode([0xC3, TOK.eos_id, 0xA9], skip_special=True) == "\ufffd\ufffd"


def test_errors_name_the_offender():
    with pytest.raises(ValueError, match="token id 272"):
        TOK.decode([1, 272])
    with pytest.raises(ValueError, match="token id -1"):
        TOK.decode([-1])
    with pytest.raises(KeyError, match="<tool>"):
        TOK.token_id("<tool>")


def test_pickles():
    clone = pickle.loads(pickle.dumps(TOK))
    assert clone.encode("<think>", allow_special=True) == [263]
