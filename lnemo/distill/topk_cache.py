"""Teacher top-k caches on disk for offline distillation: safetensors shards of batches plus a JSON index.

Each batch of packed rows is stored with the teacher's ``k`` most likely next-token ids and their
full-softmax log-probs at every position, so a student can later be distilled without the teacher
(``offline_kd_objective``). Storage per token is ``k`` ids and ``k`` log-probs instead of ``V`` logits.

Layout of ``directory``::

    index.json                 {"k", "vocab_size", "batch_size", "seq_len", "logprob_dtype", "shards": [...]}
    shard_00000.safetensors    tokens, targets, loss_mask, segment_ids, positions [N*B, T],
                               teacher_ids int32 [N*B, T, k], teacher_logprobs [N*B, T, k]
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from safetensors.numpy import load_file, save_file

from lnemo.data import ROW_FIELDS
from lnemo.losses import teacher_top_k
from lnemo.models import ModelConfig, forward, logits_from_hidden
from lnemo.types import PyTree

INDEX = "index.json"


def _top_k_fn(config: ModelConfig, k: int, chunk_size: int | None):
    def top_k(params: PyTree, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        out = forward(config, params, batch["tokens"], positions=batch["positions"],
                      segment_ids=batch["segment_ids"], skip_logits=True)
        hidden_BxTxD = out.final_hidden
        if chunk_size is None or chunk_size >= hidden_BxTxD.shape[1]:
            return teacher_top_k(logits_from_hidden(config, params, hidden_BxTxD), k=k)
        b, t, d = hidden_BxTxD.shape
        if t % chunk_size:
            raise ValueError(f"seq_len {t} is not a multiple of chunk_size {chunk_size}")
        chunks_CxBxSxD = jnp.moveaxis(hidden_BxTxD.reshape(b, t // chunk_size, chunk_size, d), 1, 0)
        ids, logprobs = jax.lax.map(lambda h: teacher_top_k(logits_from_hidden(config, params, h), k=k),
                                    chunks_CxBxSxD)
        return tuple(jnp.moveaxis(x, 0, 1).reshape(b, t, k) for x in (ids, logprobs))

    return jax.jit(top_k)


def write_teacher_top_k(config: ModelConfig, params: PyTree, batches: Iterable[Mapping[str, np.ndarray]],
                        directory: str | os.PathLike, *, k: int, batches_per_shard: int = 16,
                        logprob_dtype: str = "float32", chunk_size: int | None = None) -> pathlib.Path:
    """Run the teacher over ``batches`` and write its top-k next-token ids and log-probs to ``directory``.

    Args:
      config: the teacher model.
      params: its parameters.
      batches: finite iterable of packed-row batches (``lnemo.data`` pipelines; take a slice of an
        unbounded one with ``itertools.islice``), all of one shape ``[B, T]``.
      directory: where to write; must not hold a cache already.
      k: ids kept per position, ``1 <= k <= V``.
      batches_per_shard: batches per safetensors file.
      logprob_dtype: ``"float32"`` or ``"float16"`` (half the log-prob storage, ~1e-3 relative error).
      chunk_size: form the teacher logits this many positions at a time (``T`` must divide by it), so
        that ``[B, T, V]`` is never held at once.

    The batches are this process's; in a multi-process run give each process its own directory (a
    ``TopKCache`` per process then replays that process's shard of the data).

    Returns:
      The directory.

    Example:
      >>> write_teacher_top_k(parent, parent_params, itertools.islice(data, 64), "cache", k=16)
      >>> cache = TopKCache("cache"); len(cache)
      64

    References:
      Top-k logit KD, storage falls by about V / k (reference sheet §11).
    """
    if logprob_dtype not in ("float32", "float16"):
        raise ValueError(f"logprob_dtype must be 'float32' or 'float16', got {logprob_dtype!r}")
    if batches_per_shard < 1:
        raise ValueError(f"batches_per_shard must be >= 1, got {batches_per_shard}")
    directory = pathlib.Path(directory)
    if (directory / INDEX).exists():
        raise FileExistsError(f"{directory} already holds a teacher top-k cache ({INDEX}); use a new directory")
    directory.mkdir(parents=True, exist_ok=True)
    top_k = _top_k_fn(config, k, chunk_size)
    shards: list[dict] = []
    pending: list[dict[str, np.ndarray]] = []
    shape = None

    def flush() -> None:
        name = f"shard_{len(shards):05d}.safetensors"
        arrays = {key: np.concatenate([b[key] for b in pending]) for key in pending[0]}
        save_file(arrays, str(directory / name))
        shards.append({"file": name, "batches": len(pending)})
        pending.clear()

    for batch in batches:
        batch = {key: np.asarray(batch[key]) for key in ROW_FIELDS}
        if shape is None:
            shape = batch["tokens"].shape
        elif batch["tokens"].shape != shape:
            raise ValueError(f"batch tokens shape {batch['tokens'].shape} differs from the first batch's {shape}")
        ids, logprobs = jax.device_get(top_k(params, batch))
        pending.append({**batch, "teacher_ids": np.asarray(ids, np.int32),
                        "teacher_logprobs": np.asarray(logprobs, logprob_dtype)})
        if len(pending) == batches_per_shard:
            flush()
    if pending:
        flush()
    if not shards:
        raise ValueError("write_teacher_top_k: batches is empty")
    index = {"k": k, "vocab_size": config.vocab_size, "batch_size": shape[0], "seq_len": shape[1],
             "logprob_dtype": logprob_dtype, "shards": shards}
    (directory / INDEX).write_text(json.dumps(index, indent=2))
    return directory


class TopKCache:
    """Random access to the batches of a teacher top-k cache (a grain-style source of batches).

    Batch ``i`` is a dict of numpy arrays: the packed-row fields of ``lnemo.data`` plus ``teacher_ids``
    ``[B, T, k]`` int32 and ``teacher_logprobs`` ``[B, T, k]`` float32. One shard is held in memory at a
    time.

    Args:
      directory: a directory written by ``write_teacher_top_k``.

    Example:
      >>> cache = TopKCache("cache")
      >>> batch = cache[0]; batch["teacher_ids"].shape
      (8, 128, 16)
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = pathlib.Path(directory)
        path = self.directory / INDEX
        if not path.exists():
            raise FileNotFoundError(f"{self.directory} holds no teacher top-k cache ({INDEX} is missing)")
        self.index = json.loads(path.read_text())
        self._starts = np.cumsum([0] + [shard["batches"] for shard in self.index["shards"]])
        self._loaded: tuple[int, dict[str, np.ndarray]] | None = None

    @property
    def k(self) -> int:
        return int(self.index["k"])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} is outside [0, {len(self)})")
        shard = int(np.searchsorted(self._starts, i, side="right") - 1)
        if self._loaded is None or self._loaded[0] != shard:
            self._loaded = (shard, load_file(str(self.directory / self.index["shards"][shard]["file"])))
        rows = self.index["batch_size"]
        offset = (i - self._starts[shard]) * rows
        batch = {key: value[offset : offset + rows] for key, value in self._loaded[1].items()}
        batch["teacher_logprobs"] = batch["teacher_logprobs"].astype(np.float32)
        return batch

    def batches(self, *, num_epochs: int | None = 1) -> Iterator[dict[str, np.ndarray]]:
        """The batches in order, ``num_epochs`` times (None: forever)."""
        epoch = 0
        while num_epochs is None or epoch < num_epochs:
            yield from (self[i] for i in range(len(self)))
            epoch += 1
