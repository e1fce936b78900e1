"""The tokenizer protocol and lnemo's built-in byte-level tokenizer.

The byte tokenizer maps text to its UTF-8 bytes (ids 0-255) and reserves the ids above for special
tokens. It needs no vocabulary file, encodes any text, and keeps the vocabulary tiny, which suits
the small models trained on CPUs in lnemo's examples.

Id layout of `ByteTokenizer` (vocabulary size 272, a multiple of 16):

- 0-255: the 256 byte values;
- 256 pad, 257 bos, 258 eos (strings ``<|pad|>``, ``<|bos|>``, ``<|eos|>``);
- 259 ``<|system|>``, 260 ``<|user|>``, 261 ``<|assistant|>``: start of a chat turn by that role;
- 262 ``<|end|>``: end of any turn;
- 263 ``<think>``, 264 ``</think>``: the reasoning block;
- 265-271 ``<|reserved_0|>`` ... ``<|reserved_6|>``: unused, named so that any sampled id decodes.

Special tokens written literally in text: ``encode(text)`` treats text as data, so ``"<think>"`` becomes
its 7 bytes and user data can never inject control tokens. ``encode(text, allow_special=True)`` (what
chat templates use) turns every literal special-token string into its id. ``decode`` writes special
ids back as their strings, so ``decode(encode(s, allow_special=True)) == s`` for every string ``s``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

PAD = "<|pad|>"
BOS = "<|bos|>"
EOS = "<|eos|>"
SYSTEM = "<|system|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
END = "<|end|>"
THINK_START = "<think>"
THINK_END = "</think>"

_NUM_BYTES = 256
_NAMED_SPECIALS = (PAD, BOS, EOS, SYSTEM, USER, ASSISTANT, END, THINK_START, THINK_END)
_NUM_RESERVED = 7
_SPECIALS = _NAMED_SPECIALS + tuple(f"<|reserved_{i}|>" for i in range(_NUM_RESERVED))


@runtime_checkable
class Tokenizer(Protocol):
    """What lnemo needs from a tokenizer: text <-> ids, the vocabulary size and the special ids.

    ``encode`` never adds bos/eos; pipelines and chat templates add them explicitly.
    """

    @property
    def vocab_size(self) -> int:
        """Number of ids the model's embedding must hold (every id is below it)."""
        ...

    @property
    def bos_id(self) -> int:
        """Id that starts a document."""
        ...

    @property
    def eos_id(self) -> int:
        """Id that ends a document."""
        ...

    @property
    def pad_id(self) -> int:
        """Id written into padding slots (always masked out of losses)."""
        ...

    @property
    def special_tokens(self) -> Mapping[str, int]:
        """Special-token strings and their ids."""
        ...

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """Token ids of ``text``; literal special-token strings become their ids only if ``allow_special``."""
        ...

    def decode(self, ids: Sequence[int], *, skip_special: bool = False) -> str:
        """Text of ``ids``; special tokens are written as their strings unless ``skip_special``."""
        ...

    def token_id(self, token: str) -> int:
        """Id of the special token ``token``; raises ``KeyError`` naming it when absent."""
        ...


class ByteTokenizer:
    """UTF-8 bytes plus lnemo's special tokens (see the module docstring for the id layout).

    Example:
      >>> tok = ByteTokenizer()
      >>> tok.encode("hi")
      [104, 105]
      >>> tok.encode("<think>x", allow_special=True)
      [263, 120]
      >>> tok.decode([tok.bos_id, 104, 105])
      '<|bos|>hi'
    """

    vocab_size: int = 272
    pad_id: int = 256
    bos_id: int = 257
    eos_id: int = 258
    system_id: int = 259
    user_id: int = 260
    assistant_id: int = 261
    end_id: int = 262
    think_start_id: int = 263
    think_end_id: int = 264

    def __init__(self) -> None:
        self._ids = {token: _NUM_BYTES + i for i, token in enumerate(_SPECIALS)}
        # Longest first, so that no special string is matched by a shorter prefix of another.
        alternatives = "|".join(re.escape(t) for t in sorted(_SPECIALS, key=len, reverse=True))
        self._special_re = re.compile(f"({alternatives})")

    @property
    def special_tokens(self) -> Mapping[str, int]:
        """Special-token strings and their ids (the reserved ones included)."""
        return dict(self._ids)

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """UTF-8 byte ids of ``text``; with ``allow_special`` literal special strings become their ids.

        Args:
          text: any string without lone surrogates (those have no UTF-8 encoding).
          allow_special: match special-token strings in ``text`` (for chat templates; never for user data).

        Returns:
          The ids, one per byte or special token; no bos/eos is added.
        """
        if not allow_special:
            return list(text.encode("utf-8"))
        ids: list[int] = []
        for i, piece in enumerate(self._special_re.split(text)):
            if i % 2:
                ids.append(self._ids[piece])
            else:
                ids.extend(piece.encode("utf-8"))
        return ids

    def decode(self, ids: Sequence[int], *, skip_special: bool = False) -> str:
        """Text of ``ids``; byte runs that are not valid UTF-8 decode to U+FFFD.

        Args:
          ids: token ids, each in ``[0, vocab_size)``.
          skip_special: drop special tokens instead of writing their strings.

        Returns:
          The decoded text.
        """
        pieces: list[str] = []
        run = bytearray()
        for raw in ids:
            i = int(raw)
            if 0 <= i < _NUM_BYTES:
                run.append(i)
                continue
            if not _NUM_BYTES <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {self.vocab_size})")
            pieces.append(run.decode("utf-8", errors="replace"))
            run.clear()
            if not skip_special:
                pieces.append(_SPECIALS[i - _NUM_BYTES])
        pieces.append(run.decode("utf-8", errors="replace"))
        return "".join(pieces)

    def token_id(self, token: str) -> int:
        """Id of the special token ``token`` (e.g. ``"<think>"``)."""
        try:
            return self._ids[token]
        except KeyError:
            raise KeyError(f"{token!r} is not a special token of ByteTokenizer; known: {list(_NAMED_SPECIALS)}") from None

    def __repr__(self) -> str:
        return f"ByteTokenizer(vocab_size={self.vocab_size})"
