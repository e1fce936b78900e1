import jax.numpy as jnp
import numpy as np
import pytest

from lnemo import ope


def good():
    return ope.Sessions(np.array([[0, 2, -1], [1, 0, 2]]), np.array([[1.0, 0, 0], [0, 0, 1]]), np.array([0, 1]))


def test_check_accepts_good_log():
    ope.check_sessions(good(), candidates=ope.Candidates(np.ones((2, 3), bool)))


@pytest.mark.parametrize("mutate, match", [
    (lambda s: s._replace(items_SxK=s.items_SxK[:, :, None]), "items_SxK must be 2-D"),
    (lambda s: s._replace(clicks_SxK=s.clicks_SxK[:, :2]), "clicks_SxK shape"),
    (lambda s: s._replace(context_S=np.array([0])), "context_S shape"),
    (lambda s: ope.Sessions(s.items_SxK[:0], s.clicks_SxK[:0], s.context_S[:0]), "sessions is empty"),
    (lambda s: s._replace(items_SxK=np.array([[-1, -1, -1], [1, 0, 2]])), "empty sessions"),
    (lambda s: s._replace(items_SxK=np.array([[0, -1, 2], [1, 0, 2]])), "empty slot before"),
    (lambda s: s._replace(items_SxK=np.array([[0, 0, -1], [1, 0, 2]])), "repeats an item"),
    (lambda s: s._replace(clicks_SxK=np.array([[2.0, 0, 0], [0, 0, 1]])), "must be 0/1"),
    (lambda s: s._replace(clicks_SxK=np.array([[1.0, 0, 1], [0, 0, 1]])), "clicks on empty slots"),
    (lambda s: s._replace(context_S=np.array([0, 5])), "context_S values"),
])
def test_check_rejects_bad_logs(mutate, match):
    with pytest.raises(ValueError, match=match):
        ope.check_sessions(mutate(good()), candidates=ope.Candidates(np.ones((2, 3), bool)))


def test_check_rejects_invalid_candidate():
    where = np.ones((2, 3), bool)
    where[1, 2] = False
    with pytest.raises(ValueError, match="not a valid candidate of context 1"):
        ope.check_sessions(good(), candidates=ope.Candidates(where))


def test_long_round_trip():
    s = good()
    long = ope.to_long(s)
    assert long["item"].tolist() == [0, 2, 1, 0, 2]
    back = ope.from_long(**long, num_slots=3)
    for a, b in zip(back, s):
        np.testing.assert_array_equal(a, b)
    shuffled = {k: v[::-1] for k, v in long.items()}
    np.testing.assert_array_equal(ope.from_long(**shuffled, num_slots=3).items_SxK, s.items_SxK[::-1])


def test_from_long_rejects_ragged_columns():
    with pytest.raises(ValueError, match="equal length"):
        ope.from_long(np.zeros(2), np.zeros(2), np.zeros(3), np.zeros(2), np.zeros(2))


def test_gather_logged():
    table = jnp.arange(2 * 3 * 3, dtype=jnp.float32).reshape(2, 3, 3)
    out = ope.gather_logged(table, ope.Sessions(*map(jnp.asarray, good())))
    np.testing.assert_allclose(out, [[table[0, 0, 0], table[0, 2, 1], 0.0], [table[1, 1, 0], table[1, 0, 1],
                                                                               table[1, 2, 2]]])
