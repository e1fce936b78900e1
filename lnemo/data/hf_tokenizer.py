"""Adapter from a Hugging Face ``tokenizers`` file (``tokenizer.json``) to lnemo's `Tokenizer` protocol.

Loads from a local path only; nothing is ever downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import tokenizers


class HFTokenizer:
    """A ``tokenizer.json`` behind the `lnemo.data.Tokenizer` protocol.

    Special tokens are the tokenizer's added tokens flagged ``special``. Like `ByteTokenizer`,
    ``encode(text)`` treats their literal strings as plain text and ``encode(text, allow_special=True)``
    maps them to their ids (two copies of the tokenizer are kept, one per setting, so the
    choice is thread-safe). ``encode`` never runs the file's post-processor, so it adds no bos/eos.

    Example:
      >>> tok = HFTokenizer.from_file("checkpoints/llama/", eos_token="<|eot_id|>")  # doctest: +SKIP
      >>> tok.decode(tok.encode("hello"))  # doctest: +SKIP
      'hello'
    """

    def __init__(self, tokenizer: tokenizers.Tokenizer, *, bos_token: str, eos_token: str, pad_token: str) -> None:
        """Wrap a loaded tokenizer.

        Args:
          tokenizer: a ``tokenizers.Tokenizer``; it is copied, never mutated.
          bos_token: string of the token that starts a document.
          eos_token: string of the token that ends a document.
          pad_token: string of the padding token (may equal ``eos_token``).
        """
        self._plain = tokenizers.Tokenizer.from_str(tokenizer.to_str())
        self._plain.encode_special_tokens = True
        self._special = tokenizers.Tokenizer.from_str(tokenizer.to_str())
        self._special.encode_special_tokens = False
        self._special_ids = {t.content: i for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
        self._vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self._bos_id, self._eos_id, self._pad_id = (
            self._require(name, token)
            for name, token in (("bos_token", bos_token), ("eos_token", eos_token), ("pad_token", pad_token))
        )

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        pad_token: str | None = None,
    ) -> HFTokenizer:
        """Load ``tokenizer.json`` from a file or from a checkpoint directory.

        Token names not given are read from ``tokenizer_config.json`` beside the file when it exists;
        a missing pad token falls back to the eos token (the usual choice for Llama models).

        Args:
          path: a ``tokenizer.json`` file, or a directory holding one.
          bos_token: string of the bos token; required unless the config names it.
          eos_token: string of the eos token; required unless the config names it.
          pad_token: string of the pad token; defaults to the config's, then to ``eos_token``.

        Returns:
          The adapter.
        """
        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no tokenizer file at {file}")
        config_file = file.parent / "tokenizer_config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        bos_token = bos_token or _config_token(config, "bos_token")
        eos_token = eos_token or _config_token(config, "eos_token")
        pad_token = pad_token or _config_token(config, "pad_token") or eos_token
        for name, value in (("bos_token", bos_token), ("eos_token", eos_token)):
            if value is None:
                raise ValueError(f"{name} is not given and {config_file} does not name it; pass {name}=...")
        return cls(tokenizers.Tokenizer.from_file(str(file)), bos_token=bos_token, eos_token=eos_token, pad_token=pad_token)

    @property
    def vocab_size(self) -> int:
        """Vocabulary size including added tokens."""
        return self._vocab_size

    @property
    def bos_id(self) -> int:
        """Id of the bos token."""
        return self._bos_id

    @property
    def eos_id(self) -> int:
        """Id of the eos token."""
        return self._eos_id

    @property
    def pad_id(self) -> int:
        """Id of the pad token."""
        return self._pad_id

    @property
    def special_tokens(self) -> Mapping[str, int]:
        """The added tokens flagged special, by string."""
        return dict(self._special_ids)

    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """Token ids of ``text`` (no bos/eos added).

        Args:
          text: the text.
          allow_special: map literal special-token strings in ``text`` to their ids.

        Returns:
          The ids.
        """
        tokenizer = self._special if allow_special else self._plain
        return tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], *, skip_special: bool = False) -> str:
        """Text of ``ids``; special tokens are written as their strings unless ``skip_special``."""
        ids = [int(i) for i in ids]
        for i in ids:
            if not 0 <= i < self._vocab_size:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {self._vocab_size})")
        return self._special.decode(ids, skip_special_tokens=skip_special)

    def token_id(self, token: str) -> int:
        """Id of the special token ``token``."""
        try:
            return self._special_ids[token]
        except KeyError:
            raise KeyError(f"{token!r} is not a special token of this tokenizer; known: {sorted(self._special_ids)}") from None

    def _require(self, name: str, token: str) -> int:
        token_id = self._special.token_to_id(token)
        if token_id is None:
            raise ValueError(f"{name}={token!r} is not in the tokenizer's vocabulary")
        return token_id

    def __repr__(self) -> str:
        return f"HFTokenizer(vocab_size={self._vocab_size}, bos_id={self._bos_id}, eos_id={self._eos_id})"


def _config_token(config: dict, key: str) -> str | None:
    value = config.get(key)
    if isinstance(value, dict):  # transformers writes AddedToken objects as {"content": ...}
        value = value.get("content")
    return value
