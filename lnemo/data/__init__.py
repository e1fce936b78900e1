"""Tokenizers, synthetic reasoning tasks, corpus readers and grain pipelines that pack and batch."""

from lnemo.data.hf_tokenizer import HFTokenizer
from lnemo.data.packing import ROW_FIELDS, next_token_targets, pack
from lnemo.data.pipeline import pack_and_batch, shard_dataset, synthetic_pipeline, text_pipeline, tokenize_document
from lnemo.data.readers import by_blank_line, by_file, by_line, read_jsonl, read_jsonl_records, read_text
from lnemo.data.tasks import (
    DEFAULT_TASKS,
    Problem,
    ProblemSource,
    Task,
    arithmetic,
    counting,
    extract_answer,
    format_answer,
    match_integers,
    problem_document,
    sorting,
)
from lnemo.data.tokenizer import ByteTokenizer, Tokenizer

__all__ = [
    "DEFAULT_TASKS",
    "ROW_FIELDS",
    "ByteTokenizer",
    "HFTokenizer",
    "Problem",
    "ProblemSource",
    "Task",
    "Tokenizer",
    "arithmetic",
    "by_blank_line",
    "by_file",
    "by_line",
    "counting",
    "extract_answer",
    "format_answer",
    "match_integers",
    "next_token_targets",
    "pack",
    "pack_and_batch",
    "problem_document",
    "read_jsonl",
    "read_jsonl_records",
    "read_text",
    "shard_dataset",
    "sorting",
    "synthetic_pipeline",
    "text_pipeline",
    "tokenize_document",
]
