"""The chat template with Llama-Nemotron's reasoning toggle, and its tokenisation with a trained-token mask.

Every conversation opens with a system turn whose content is exactly ``detailed thinking on`` or
``detailed thinking off``. With thinking on the assistant answers ``<think>trace</think>answer``; with
thinking off it answers directly, with no think tags. A ``ChatFormat`` says how turns are delimited: the
default is lnemo's compact form for the byte tokenizer, ``ChatFormat.llama3()`` the Llama 3 headers.

Tokenisation treats text as data: role markers and the think tags are the only places where special
tokens can appear (a user writing ``<|end|>`` gets its bytes, not the control token). The trained tokens
(``target_mask`` True) are the assistant turns' content and their end marker, never the prompt.

Example:
  >>> from lnemo.data import ByteTokenizer
  >>> tok = ByteTokenizer()
  >>> messages = chat_messages("What is 3+4?", "<think>3+4=7</think>Answer: 7", thinking=True)
  >>> render(messages)
  '<|system|>detailed thinking on<|end|><|user|>What is 3+4?<|end|><|assistant|><think>3+4=7</think>Answer: 7<|end|>'
  >>> ex = encode_chat(messages, tok)
  >>> tok.decode(np.compress(ex["target_mask"], ex["tokens"]))
  '<think>3+4=7</think>Answer: 7<|end|>'

References:
  Bercovich et al., "Llama-Nemotron: Efficient Reasoning Models", arXiv 2505.00949, §4 (reasoning toggle).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

import numpy as np

from lnemo.data import Tokenizer

THINKING_ON = "detailed thinking on"
THINKING_OFF = "detailed thinking off"

#: A chat message: ``{"role": "system" | "user" | "assistant", "content": str}``.
Message = Mapping[str, str]


def system_prompt(thinking: bool) -> str:
    """The toggle: ``"detailed thinking on"`` or ``"detailed thinking off"``."""
    return THINKING_ON if thinking else THINKING_OFF


@dataclasses.dataclass(frozen=True)
class ChatFormat:
    """How turns and the reasoning block are written.

    A turn is ``<role prefix> + content + end``; the conversation starts with ``begin``.

    Attributes:
      system, user, assistant: the prefix of each role's turn.
      end: closes every turn; generation stops on it.
      think_start, think_end: the reasoning block's tags.
      begin: text before the first turn (e.g. Llama 3's ``<|begin_of_text|>``).
    """

    system: str = "<|system|>"
    user: str = "<|user|>"
    assistant: str = "<|assistant|>"
    end: str = "<|end|>"
    think_start: str = "<think>"
    think_end: str = "</think>"
    begin: str = ""

    @classmethod
    def llama3(cls) -> ChatFormat:
        """Llama 3 headers (``<|start_header_id|>role<|end_header_id|>\\n\\n ... <|eot_id|>``)."""
        header = "<|start_header_id|>{}<|end_header_id|>\n\n"
        return cls(header.format("system"), header.format("user"), header.format("assistant"), "<|eot_id|>",
                   begin="<|begin_of_text|>")

    def prefix(self, role: str) -> str:
        """The prefix of a ``role`` turn; raises ``ValueError`` naming an unknown role."""
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"message role={role!r} must be 'system', 'user' or 'assistant'")
        return getattr(self, role)


def reasoning_response(answer: str, *, trace: str | None, thinking: bool, fmt: ChatFormat = ChatFormat()) -> str:
    """The assistant text: ``<think>trace</think>answer`` with thinking on, ``answer`` alone with it off.

    Example:
      >>> reasoning_response("Answer: 7", trace="3+4=7", thinking=True)
      '<think>3+4=7</think>Answer: 7'
    """
    if not thinking:
        return answer
    if trace is None:
        raise ValueError("reasoning_response: thinking=True needs a trace")
    return f"{fmt.think_start}{trace}{fmt.think_end}{answer}"


def chat_messages(prompt: str, response: str | None = None, *, thinking: bool) -> list[dict[str, str]]:
    """System toggle, user prompt and (when given) the assistant response, as messages."""
    messages = [{"role": "system", "content": system_prompt(thinking)}, {"role": "user", "content": prompt}]
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return messages


def render(messages: Sequence[Message], *, fmt: ChatFormat = ChatFormat(), generation_prompt: bool = False) -> str:
    """The conversation as text (what ``encode_chat`` tokenises), optionally ending with an open assistant turn."""
    text = fmt.begin + "".join(fmt.prefix(m["role"]) + m["content"] + fmt.end for m in _checked(messages))
    return text + (fmt.assistant if generation_prompt else "")


def encode_chat(messages: Sequence[Message], tokenizer: Tokenizer, *, fmt: ChatFormat = ChatFormat(),
                generation_prompt: bool = False) -> dict[str, np.ndarray]:
    """Token ids of a conversation and the mask of the trained tokens.

    Role prefixes, ``end`` and ``begin`` are encoded with special tokens; system and user content as
    data; assistant content as data except for the think tags. ``target_mask`` is True on assistant
    content and its closing ``end`` (the tokens the model must produce).

    Args:
      messages: the turns, each ``{"role", "content"}``.
      tokenizer: byte or Hugging Face tokenizer.
      fmt: the turn format.
      generation_prompt: append an open assistant prefix (for generation; nothing is trained there).

    Returns:
      ``{"tokens": int32 [T], "target_mask": bool [T]}``, the input of ``lnemo.data.pack_and_batch``.
    """
    ids: list[int] = []
    mask: list[bool] = []

    def put(new: list[int], trained: bool) -> None:
        ids.extend(new)
        mask.extend([trained] * len(new))

    put(tokenizer.encode(fmt.begin, allow_special=True), False)
    for m in _checked(messages):
        put(tokenizer.encode(fmt.prefix(m["role"]), allow_special=True), False)
        trained = m["role"] == "assistant"
        put(_encode_response(m["content"], tokenizer, fmt) if trained else tokenizer.encode(m["content"]), trained)
        put(tokenizer.encode(fmt.end, allow_special=True), trained)
    if generation_prompt:
        put(tokenizer.encode(fmt.assistant, allow_special=True), False)
    return {"tokens": np.array(ids, np.int32), "target_mask": np.array(mask, bool)}


def prompt_ids(prompt: str, tokenizer: Tokenizer, *, thinking: bool, fmt: ChatFormat = ChatFormat()) -> list[int]:
    """The generation prompt: system toggle, user turn and the open assistant prefix."""
    return encode_chat(chat_messages(prompt, thinking=thinking), tokenizer, fmt=fmt,
                       generation_prompt=True)["tokens"].tolist()


def _encode_response(text: str, tokenizer: Tokenizer, fmt: ChatFormat) -> list[int]:
    tags = f"({re.escape(fmt.think_start)}|{re.escape(fmt.think_end)})"
    ids: list[int] = []
    for i, piece in enumerate(re.split(tags, text)):
        ids.extend(tokenizer.encode(piece, allow_special=bool(i % 2)))
    return ids


def _checked(messages: Sequence[Message]) -> Sequence[Message]:
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}]={m!r} must be a mapping with string 'role' and 'content'")
    return messages
