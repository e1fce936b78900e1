"""grain pipelines from documents to batches of packed rows, sharded per process and checkpointable.

Every pipeline returns a ``grain.IterDataset`` of batches: dicts of numpy arrays

| key | shape | dtype |
|---|---|---|
| ``tokens`` | [B, T] | int32 |
| ``targets`` | [B, T] | int32 |
| ``loss_mask`` | [B, T] | bool |
| ``segment_ids`` | [B, T] | int32 (0 = padding) |
| ``positions`` | [B, T] | int32 |

(see `lnemo.data.packing`). ``iter(dataset)`` is a ``grain.DatasetIterator``; its ``get_state()`` is a
small JSON-serialisable dict and ``set_state(state)`` on a fresh iterator resumes at exactly the next batch.

Sharding: documents are split across ``shard.shard_count`` processes (default: one shard per JAX
process, `grain.sharding.ShardByJaxProcess`), each process packs and batches its own disjoint share, and
B is the per-process batch size. The global batch of an N-process run is the concatenation, in process
order, of the N shards' batches, so a single process reproduces it by building the N pipelines with
``grain.sharding.ShardOptions(i, N)`` and concatenating their batches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
import grain
import numpy as np

from lnemo.data.packing import pack
from lnemo.data.tasks import Problem, ProblemSource, problem_document
from lnemo.data.tokenizer import Tokenizer


def shard_dataset(dataset: grain.MapDataset, shard: grain.sharding.ShardOptions) -> grain.MapDataset:
    """This shard's elements: every ``shard_count``-th element from ``shard_index``.

    With ``drop_remainder`` the last ``len % shard_count`` elements are dropped so that shards are equal.
    """
    if not 0 <= shard.shard_index < shard.shard_count:
        raise ValueError(f"shard_index must be in [0, {shard.shard_count}), got {shard.shard_index}")
    if shard.drop_remainder:
        dataset = dataset[: len(dataset) - len(dataset) % shard.shard_count]
    return dataset[shard.shard_index :: shard.shard_count]


def tokenize_document(text: str, *, tokenizer: Tokenizer) -> dict[str, np.ndarray]:
    """A document as an example for `lnemo.data.pack`: ``bos + encode(text) + eos``, every token a target.

    The text is encoded as data (``allow_special=False``).
    """
    tokens = np.array([tokenizer.bos_id, *tokenizer.encode(text), tokenizer.eos_id], np.int32)
    return {"tokens": tokens, "target_mask": np.ones(tokens.shape, bool)}


def pack_and_batch(
    examples: grain.MapDataset,
    *,
    seq_len: int,
    batch_size: int,
    pad_id: int,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = 1,
    shard: grain.sharding.ShardOptions | None = None,
    read_options: grain.ReadOptions | None = None,
) -> grain.IterDataset:
    """Shard, shuffle, repeat, pack and batch tokenized examples.

    Args:
      examples: elements are dicts with ``"tokens"`` and ``"target_mask"`` (see `lnemo.data.pack`).
      seq_len: row length T.
      batch_size: rows per batch B on this process; a last incomplete batch is dropped.
      pad_id: id for padding and missing targets.
      seed: shuffle seed (each epoch is reshuffled).
      shuffle: shuffle examples before packing.
      num_epochs: passes over the examples; None repeats forever.
      shard: this process's shard; default one shard per JAX process, equal sizes.
      read_options: grain's threading/prefetch options for reading examples.

    Returns:
      A dataset of batches (module docstring).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be >= 1 or None, got {num_epochs}")
    dataset = shard_dataset(examples, shard or grain.sharding.ShardByJaxProcess(drop_remainder=True))
    if shuffle:
        dataset = dataset.seed(seed).shuffle()
    dataset = dataset.repeat(num_epochs)
    rows = pack(dataset.to_iter_dataset(read_options), seq_len=seq_len, pad_id=pad_id)
    return rows.batch(batch_size, drop_remainder=True)


def text_pipeline(
    texts: Sequence[str],
    tokenizer: Tokenizer,
    *,
    seq_len: int,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = 1,
    shard: grain.sharding.ShardOptions | None = None,
    read_options: grain.ReadOptions | None = None,
) -> grain.IterDataset:
    """Batches of packed rows from documents (e.g. from `lnemo.data.read_text` or `lnemo.data.read_jsonl`).

    Each document becomes ``bos + text + eos``.

    Args:
      texts: the documents (any random-access sequence of strings).
      tokenizer: the tokenizer.
      seq_len: row length T.
      batch_size: rows per batch B on this process.
      seed: shuffle seed (each epoch is reshuffled).
      shuffle: shuffle documents before packing.
      num_epochs: passes over the documents; None repeats forever.
      shard: this process's shard; default one shard per JAX process, equal sizes.
      read_options: grain's threading/prefetch options.

    Returns:
      A dataset of batches.

    Example:
      >>> from lnemo.data import ByteTokenizer
      >>> ds = text_pipeline(["hello", "world"], ByteTokenizer(), seq_len=8, batch_size=1, shard=grain.sharding.NoSharding())
      >>> next(iter(ds))["tokens"].shape
      (1, 8)
    """
    examples = grain.MapDataset.source(texts).map(functools.partial(tokenize_document, tokenizer=tokenizer))
    return pack_and_batch(
        examples,
        seq_len=seq_len,
        batch_size=batch_size,
        pad_id=tokenizer.pad_id,
        seed=seed,
        shuffle=shuffle,
        num_epochs=num_epochs,
        shard=shard,
        read_options=read_options,
    )


def synthetic_pipeline(
    tokenizer: Tokenizer,
    *,
    seq_len: int,
    batch_size: int,
    source: ProblemSource = ProblemSource(),
    document: Callable[[Problem], str] = problem_document,
    shard: grain.sharding.ShardOptions | None = None,
    read_options: grain.ReadOptions | None = None,
) -> grain.IterDataset:
    """An effectively unbounded, deterministic pretraining stream of synthetic reasoning problems.

    Problem ``i`` of ``source`` (drawn from seed ``(source.seed, i)``) becomes the document
    ``document(problem)``, by default prompt, gold trace and answer line. Problems are independent
    draws, so no shuffling is needed; the stream ends only after ``source.size`` problems.

    Args:
      tokenizer: the tokenizer.
      seq_len: row length T.
      batch_size: rows per batch B on this process.
      source: the problems (tasks, difficulties, seed).
      document: problem -> text.
      shard: this process's shard; default one shard per JAX process.
      read_options: grain's threading/prefetch options.

    Returns:
      A dataset of batches.

    Example:
      >>> from lnemo.data import ByteTokenizer
      >>> ds = synthetic_pipeline(ByteTokenizer(), seq_len=128, batch_size=4, shard=grain.sharding.NoSharding())
      >>> batch = next(iter(ds))
      >>> batch["tokens"].shape, batch["loss_mask"].dtype
      ((4, 128), dtype('bool'))
    """
    texts = grain.MapDataset.source(source).map(document)
    examples = texts.map(functools.partial(tokenize_document, tokenizer=tokenizer))
    return pack_and_batch(
        examples,
        seq_len=seq_len,
        batch_size=batch_size,
        pad_id=tokenizer.pad_id,
        shuffle=False,
        shard=shard,
        read_options=read_options,
    )
