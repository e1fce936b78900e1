"""Readers for corpora supplied by the user: plain-text files and JSONL files.

Each reader returns a list of document strings, which is a grain data source as it is
(``grain.MapDataset.source(docs)``) and the input of `lnemo.data.text_pipeline`. Files are read
whole into memory, which suits research-scale corpora.

How a text file splits into documents is a callable ``str -> list[str]``:

| splitter | one document per |
|---|---|
| `by_file` | file |
| `by_line` | non-empty line |
| `by_blank_line` | paragraph: a run of lines separated from the next by one or more blank lines |

Documents are stripped of surrounding whitespace and empty ones are dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

PathLike = str | Path
_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n\s*")


def by_file(text: str) -> list[str]:
    """The whole text as one document."""
    return [text]


def by_line(text: str) -> list[str]:
    """One document per line."""
    return text.splitlines()


def by_blank_line(text: str) -> list[str]:
    """One document per blank-line-separated paragraph.

    Example:
      >>> by_blank_line("a\\nb\\n\\n\\nc")
      ['a\\nb', 'c']
    """
    return _BLANK_LINES.split(text.replace("\r\n", "\n"))


def read_text(paths: PathLike | Sequence[PathLike], *, split: Callable[[str], list[str]] = by_blank_line) -> list[str]:
    """Documents of UTF-8 text files, in file order.

    Args:
      paths: a file or a list of files.
      split: how a file's text splits into documents (`by_file`, `by_line`, `by_blank_line` or your own).

    Returns:
      The non-empty documents, stripped.
    """
    docs: list[str] = []
    for path in _as_paths(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: not valid UTF-8 at byte {err.start}") from None
        docs.extend(d.strip() for d in split(text) if d.strip())
    return docs


def read_jsonl_records(path: PathLike) -> Iterator[tuple[int, dict[str, Any]]]:
    """The JSON objects of a JSONL file with their 1-based line numbers; blank lines are skipped.

    Raises:
      ValueError: naming the file and line of invalid JSON or of a value that is not an object.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: invalid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
            yield lineno, record


def read_jsonl(paths: PathLike | Sequence[PathLike], *, field: str = "text") -> list[str]:
    """The string ``field`` of every record of JSONL files, in file order.

    Args:
      paths: a file or a list of files, one JSON object per line.
      field: the key holding each document's text.

    Returns:
      One document per record (empty strings included, so that documents and records line up).

    Raises:
      ValueError: naming the file, line and field when a record lacks ``field`` or it is not a string.
    """
    docs: list[str] = []
    for path in _as_paths(paths):
        for lineno, record in read_jsonl_records(path):
            if field not in record:
                raise ValueError(f"{path}:{lineno}: record has no field {field!r} (fields: {sorted(record)})")
            value = record[field]
            if not isinstance(value, str):
                raise ValueError(f"{path}:{lineno}: field {field!r} must be a string, got {type(value).__name__}")
            docs.append(value)
    return docs


def _as_paths(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        return [Path(paths)]
    return [Path(p) for p in paths]
