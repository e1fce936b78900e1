import grain
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lnemo.data import ROW_FIELDS, next_token_targets, pack

PAD = -1


def _rows(docs, seq_len, masks=None):
    examples = [
        {"tokens": d, "target_mask": np.ones(len(d), bool) if masks is None else m}
        for d, m in zip(docs, masks or [None] * len(docs))
    ]
    return list(pack(grain.MapDataset.source(examples).to_iter_dataset(), seq_len=seq_len, pad_id=PAD))


def _segments(row):
    """(segment id, slice) of each segment of a row."""
    out = []
    for s in np.unique(row["segment_ids"][row["segment_ids"] > 0]):
        (idx,) = np.nonzero(row["segment_ids"] == s)
        assert np.array_equal(idx, np.arange(idx[0], idx[-1] + 1)), "segments are contiguous"
        out.append((s, slice(idx[0], idx[-1] + 1)))
    return out


def test_next_token_targets_by_hand():
    tokens = np.array([[5, 6, 7, 8, 9, 0], [1, 2, 3, 4, 5, 6]])
    segments = np.array([[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 1]])
    mask = np.array([[1, 1, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]], bool)
    targets, loss_mask = next_token_targets(tokens, segments, mask, pad_id=PAD)
    assert targets.tolist() == [[6, 7, PAD, 9, PAD, PAD], [2, 3, 4, 5, 6, PAD]]
    assert loss_mask.tolist() == [[True, False, False, True, False, False], [True] * 5 + [False]]
    # leading batch dims: the same per row
    stacked, stacked_mask = next_token_targets(tokens[None], segments[None], mask[None], pad_id=PAD)
    assert np.array_equal(stacked[0], targets) and np.array_equal(stacked_mask[0], loss_mask)
    assert targets.dtype == np.int32 and loss_mask.dtype == bool


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=12), st.integers(2, 16))
def test_packing_invariants(lengths, seq_len):
    # every token is unique: 1000 * document + position
    docs = [np.arange(n, dtype=np.int32) + 1000 * (i + 1) for i, n in enumerate(lengths)]
    rows = _rows(docs, seq_len)
    for row in rows:
        assert set(row) == set(ROW_FIELDS)
        assert all(row[k].shape == (seq_len,) for k in ROW_FIELDS)
        assert row["tokens"].dtype == row["targets"].dtype == row["segment_ids"].dtype == np.int32
    tokens = np.concatenate([r["tokens"][r["segment_ids"] > 0] for r in rows])
    assert sorted(tokens.tolist()) == sorted(np.concatenate(docs).tolist()), "no token lost or duplicated"
    pieces = {}
    for r, row in enumerate(rows):
        segments = _segments(row)
        assert [s for s, _ in segments] == list(range(1, len(segments) + 1))
        padding = row["segment_ids"] == 0
        if padding.any():
            assert r == len(rows) - 1 and padding[np.argmax(padding) :].all(), "only the last row's tail pads"
        assert (row["tokens"][padding] == PAD).all() and not row["loss_mask"][padding].any()
        for _, sl in segments:
            seg_tokens = row["tokens"][sl]
            doc, start = divmod(int(seg_tokens[0]), 1000)
            assert np.array_equal(seg_tokens, docs[doc - 1][start : start + len(seg_tokens)]), "one document in order"
            pieces.setdefault(doc, []).append(start)
            assert np.array_equal(row["positions"][sl], np.arange(len(seg_tokens))), "positions restart"
            assert np.array_equal(row["targets"][sl][:-1], seg_tokens[1:])
            assert row["loss_mask"][sl][:-1].all()
            assert not row["loss_mask"][sl][-1] and row["targets"][sl][-1] == PAD, "last token of a segment is masked"
    assert all(starts == sorted(starts) for starts in pieces.values())


def test_target_mask_is_carried_through_splits():
    docs = [np.arange(7) + 10, np.arange(5) + 20]
    masks = [np.array([0, 0, 0, 1, 1, 1, 1], bool), np.array([0, 1, 0, 1, 1], bool)]
    rows = _rows(docs, 4, masks)
    assert [r["tokens"].tolist() for r in rows] == [[10, 11, 12, 13], [14, 15, 16, 20], [21, 22, 23, 24]]
    assert [r["loss_mask"].tolist() for r in rows] == [
        [False, False, True, False],  # 12 -> 13 is the first trained pair; 13 -> 14 crosses rows
        [True, True, False, False],
        [False, True, True, False],
    ]
    assert rows[1]["segment_ids"].tolist() == [1, 1, 1, 2]
    assert rows[1]["positions"].tolist() == [0, 1, 2, 0]


@pytest.mark.parametrize(
    ("example", "message"),
    [
        ({"tokens": [1, 2]}, "'tokens' and 'target_mask'.*keys \\['tokens'\\]"),
        ([1, 2], "got list"),
        ({"tokens": [], "target_mask": []}, "non-empty"),
        ({"tokens": [1, 2], "target_mask": [True]}, "'target_mask' has shape \\(1,\\)"),
    ],
)
def test_bad_examples(example, message):
    ds = pack(grain.MapDataset.source([example]).to_iter_dataset(), seq_len=4, pad_id=0)
    with pytest.raises(ValueError, match=message):
        next(iter(ds))


def test_bad_seq_len():
    with pytest.raises(ValueError, match="seq_len must be >= 2, got 1"):
        pack(grain.MapDataset.source([]).to_iter_dataset(), seq_len=1, pad_id=0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=10), st.integers(2, 9), st.data())
def test_resume_from_json_state_at_any_row(lengths, seq_len, data):
    import json

    examples = [{"tokens": np.arange(n) + 100 * i, "target_mask": np.ones(n, bool)} for i, n in enumerate(lengths)]
    ds = pack(grain.MapDataset.source(examples).to_iter_dataset(), seq_len=seq_len, pad_id=PAD)
    full = [r["tokens"].tolist() for r in ds]
    stop = data.draw(st.integers(0, len(full)))
    it = iter(ds)
    for _ in range(stop):
        next(it)
    resumed = iter(ds)
    resumed.set_state(json.loads(json.dumps(it.get_state())))
    assert [r["tokens"].tolist() for r in resumed] == full[stop:]
