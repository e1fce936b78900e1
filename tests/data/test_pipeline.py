import json
from collections import Counter

import grain
import numpy as np
import pytest

from lnemo.data import (
    ByteTokenizer,
    ProblemSource,
    pack_and_batch,
    problem_document,
    shard_dataset,
    synthetic_pipeline,
    text_pipeline,
    tokenize_document,
)

TOK = ByteTokenizer()
DOCS = [f"document {i}: " + "xyz"[i % 3] * (i % 11) for i in range(37)]
ONE_SHARD = grain.sharding.NoSharding()


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_batch_layout():
    batch = next(iter(text_pipeline(DOCS, TOK, seq_len=16, batch_size=3, shard=ONE_SHARD)))
    dtypes = {"tokens": np.int32, "targets": np.int32, "loss_mask": bool, "segment_ids": np.int32, "positions": np.int32}
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {k: ((3, 16), np.dtype(d)) for k, d in dtypes.items()}


@pytest.mark.parametrize("count", [1, 2, 3, 4])
@pytest.mark.parametrize("drop_remainder", [False, True])
def test_shards_are_disjoint_covers(count, drop_remainder):
    data = grain.MapDataset.source(list(range(23)))
    shards = [list(shard_dataset(data, grain.sharding.ShardOptions(i, count, drop_remainder))) for i in range(count)]
    seen = [x for s in shards for x in s]
    assert len(seen) == len(set(seen))
    assert set(seen) == set(range(23 - 23 % count if drop_remainder else 23))
    if drop_remainder:
        assert len({len(s) for s in shards}) == 1
    with pytest.raises(ValueError, match="shard_index"):
        shard_dataset(data, grain.sharding.ShardOptions(count, count))


def test_sharded_pipelines_split_all_tokens():
    def tokens_of(shard):
        ds = text_pipeline(DOCS, TOK, seq_len=16, batch_size=1, shard=shard, seed=3)
        return [t for b in ds for t in b["tokens"][b["segment_ids"] > 0].tolist()]

    everything = Counter(t for d in DOCS for t in tokenize_document(d, tokenizer=TOK)["tokens"].tolist())
    shards = [Counter(tokens_of(grain.sharding.ShardOptions(i, 2))) for i in range(2)]
    assert shards[0] + shards[1] == everything
    assert shards[0][TOK.bos_id] == 19 and shards[1][TOK.bos_id] == 18
    assert Counter(tokens_of(None)) == everything  # default: one shard per JAX process (1 here)


def test_shuffle_is_seeded_and_reshuffles_each_epoch():
    def first_tokens(seed, shuffle=True):
        ds = text_pipeline(DOCS, TOK, seq_len=400, batch_size=1, seed=seed, shuffle=shuffle, num_epochs=2, shard=ONE_SHARD)
        return [b["tokens"][0].tolist() for b in ds]

    assert first_tokens(0) == first_tokens(0)
    assert first_tokens(0) != first_tokens(1)
    rows = first_tokens(0)
    epoch = sum(len(d) + 2 for d in DOCS)  # the second epoch starts where the first ends
    stream = np.concatenate(rows)
    unshuffled = np.concatenate(first_tokens(0, shuffle=False))
    assert not np.array_equal(stream[:epoch], unshuffled[:epoch])
    assert not np.array_equal(stream[:epoch], stream[epoch : 2 * epoch])
    assert sorted(stream[:epoch].tolist()) == sorted(stream[epoch : 2 * epoch].tolist())


@pytest.mark.parametrize("stop", [0, 1, 5])
def test_checkpoint_resume_is_exact(stop):
    def make():
        return text_pipeline(DOCS, TOK, seq_len=24, batch_size=2, seed=5, num_epochs=3, shard=ONE_SHARD)

    full = list(make())
    it = iter(make())
    _take(it, stop)
    state = json.loads(json.dumps(it.get_state()))  # as an orbax JsonSave would store it
    resumed = iter(make())
    resumed.set_state(state)
    _assert_same(list(resumed), full[stop:])


def test_synthetic_stream_is_deterministic_and_resumable():
    def make(**kw):
        return synthetic_pipeline(TOK, seq_len=64, batch_size=2, source=ProblemSource(seed=11), shard=ONE_SHARD, **kw)

    it = iter(make())
    first = _take(it, 3)
    state = json.loads(json.dumps(it.get_state()))
    after = _take(it, 3)
    _assert_same(first, _take(iter(make()), 3))
    resumed = iter(make(read_options=grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))
    resumed.set_state(state)
    _assert_same(_take(resumed, 3), after)


@pytest.mark.parametrize("shard_index", [0, 1])
def test_synthetic_documents_are_problems(shard_index):
    source = ProblemSource(seed=2)
    shard = grain.sharding.ShardOptions(shard_index, 2)
    batch = next(iter(synthetic_pipeline(TOK, seq_len=256, batch_size=1, source=source, shard=shard)))
    row = {k: v[0] for k, v in batch.items()}
    first = row["tokens"][row["segment_ids"] == 1].tolist()
    assert first == tokenize_document(problem_document(source[shard_index]), tokenizer=TOK)["tokens"].tolist()
    assert row["loss_mask"].mean() > 0.9


def test_custom_examples_keep_their_target_mask():
    # e.g. SFT: train only on the "answer" half of each example
    examples = grain.MapDataset.source([np.arange(6) + 10 * i for i in range(1, 5)]).map(
        lambda t: {"tokens": t, "target_mask": np.arange(6) >= 3}
    )
    batches = list(pack_and_batch(examples, seq_len=12, batch_size=2, pad_id=0, shuffle=False, shard=ONE_SHARD))
    assert len(batches) == 1
    trained = batches[0]["targets"][batches[0]["loss_mask"]]
    assert trained.tolist() == [13, 14, 15, 23, 24, 25, 33, 34, 35, 43, 44, 45]


def test_argument_errors():
    examples = grain.MapDataset.source([])
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        pack_and_batch(examples, seq_len=8, batch_size=0, pad_id=0)
    with pytest.raises(ValueError, match="num_epochs"):
        pack_and_batch(examples, seq_len=8, batch_size=1, pad_id=0, num_epochs=0)


def test_default_shard_follows_the_jax_process(monkeypatch):
    import jax

    monkeypatch.setattr(jax, "process_index", lambda: 1)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    default = list(text_pipeline(DOCS, TOK, seq_len=16, batch_size=1, shuffle=False))
    explicit = list(
        text_pipeline(DOCS, TOK, seq_len=16, batch_size=1, shuffle=False, shard=grain.sharding.ShardOptions(1, 2, True))
    )
    _assert_same(default, explicit)
    assert TOK.decode(default[0]["tokens"][0]).startswith("<|bos|>document 1:")
