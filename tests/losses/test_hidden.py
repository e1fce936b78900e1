"""Tests for lnemo.losses.hidden: cosine distance, MSE, normalised MSE, layer-pair sums."""

import functools

import hypothesis.extra.numpy as hnp
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lnemo.losses import hidden

D = 5


def _np_cosine(s, t):
    s, t = np.asarray(s, np.float64), np.asarray(t, np.float64)
    return 1 - (s * t).sum(-1) / (np.linalg.norm(s, axis=-1) * np.linalg.norm(t, axis=-1))


def _np_mse(s, t):
    return ((np.asarray(s, np.float64) - t) ** 2).mean(-1)


def _np_nmse(s, t, eps=1e-6):
    return _np_mse(s, t) / ((np.asarray(t, np.float64) ** 2).mean(-1) + eps)


REFERENCES = {
    "cosine_distance": (hidden.cosine_distance, _np_cosine),
    "mse": (hidden.mse, _np_mse),
    "normalized_mse": (hidden.normalized_mse, _np_nmse),
}
NAMES = list(REFERENCES)
JITTED = {name: jax.jit(fn, static_argnames="axis") for name, (fn, _) in REFERENCES.items()}


def _data(seed=0, shape=(3, 4), width=D):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((*shape, width)).astype(np.float32)
    t = rng.standard_normal((*shape, width)).astype(np.float32)
    return s, t, rng.random(shape) < 0.6


def test_hand_values():
    e1, e2 = np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]])
    np.testing.assert_allclose(hidden.cosine_distance(e1, e2), [1.0], atol=1e-6)
    np.testing.assert_allclose(hidden.cosine_distance(e1, 3 * e1), [0.0], atol=1e-6)
    np.testing.assert_allclose(hidden.cosine_distance(e1, -e1), [2.0], atol=1e-6)
    np.testing.assert_allclose(hidden.mse(np.array([[1.0, 3.0]]), np.array([[0.0, 1.0]])), [2.5], rtol=1e-6)
    np.testing.assert_allclose(hidden.normalized_mse(np.zeros((1, 2)), np.array([[3.0, 4.0]]), eps=0.0), [1.0])
    np.testing.assert_allclose(
        hidden.normalized_mse(np.array([[3.0, 3.0]]), np.array([[3.0, 4.0]])), [1 / 25], rtol=1e-5
    )


@pytest.mark.parametrize("name", NAMES)
def test_float64_reference_and_jit(name):
    s, t, w = _data(width=16)
    fn, ref = REFERENCES[name]
    np.testing.assert_allclose(JITTED[name](s, t), ref(s, t), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(JITTED[name](s, t, where=w), fn(s, t, where=w), rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_masked_equals_sliced_batch_dims_axis(name):
    s, t, w = _data(shape=(2, 3, 4))
    fn = JITTED[name]
    full = np.asarray(fn(s, t, where=w))
    np.testing.assert_allclose(full[w], fn(s[w], t[w]), rtol=1e-6)
    assert np.all(full[~w] == 0)
    np.testing.assert_allclose(fn(s, t), np.reshape(fn(s.reshape(-1, D), t.reshape(-1, D)), (2, 3, 4)), rtol=1e-6)
    np.testing.assert_allclose(fn(np.moveaxis(s, -1, 1), np.moveaxis(t, -1, 1), axis=1), fn(s, t), rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_all_masked_and_zero_vectors_finite_grads_teacher_none(name):
    fn = REFERENCES[name][0]
    s, t, w = _data()
    value, grad = jax.value_and_grad(lambda s: fn(s, t, where=np.zeros_like(w)).sum())(np.full_like(s, np.nan))
    assert value == 0 and np.all(np.asarray(grad) == 0)
    zeros = np.zeros_like(s)
    for a, b in ((zeros, t), (s, zeros), (zeros, zeros)):
        value, grad = jax.value_and_grad(lambda a: fn(a, b).sum())(a)
        assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert np.all(np.asarray(jax.grad(lambda t: fn(s, t, where=w).sum())(t)) == 0)


def test_width_mismatch_raises():
    with pytest.raises(ValueError, match="pass a projection"):
        hidden.mse(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="kernel_DsxDt"):
        hidden.project(np.zeros((2, 3)), np.zeros((4, 4)))


def test_layer_pairs_loss_sums_pairs_with_projection():
    rng = np.random.default_rng(3)
    student = [rng.standard_normal((2, 3, 4)).astype(np.float32) for _ in range(3)]
    teacher = rng.standard_normal((5, 2, 3, 6)).astype(np.float32)  # stacked, layer axis first
    kernel = rng.standard_normal((4, 6)).astype(np.float32)
    where = rng.random((2, 3)) < 0.5
    pairs = [(0, 1), (2, 4), (-1, 0)]
    got = hidden.layer_pairs_loss(student, teacher, pairs=pairs, projections=[kernel] * 3, where=where)
    expected = sum(_np_cosine(student[i] @ kernel, teacher[j]) for i, j in pairs) * where
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    nmse = functools.partial(hidden.normalized_mse, eps=0.0)
    same_width = hidden.layer_pairs_loss(teacher, teacher[::-1], pairs=[(0, 4), (1, 1)], loss_fn=nmse)
    np.testing.assert_allclose(same_width, _np_nmse(teacher[1], teacher[3], eps=0.0), rtol=1e-5)
    mixed = hidden.layer_pairs_loss(student, student, pairs=[(0, 1), (2, 2)], projections=[None, kernel[:, :4]])
    np.testing.assert_allclose(
        mixed, _np_cosine(student[0], student[1]) + _np_cosine(student[2] @ kernel[:, :4], student[2]), rtol=1e-5
    )


def test_layer_pairs_projection_gets_gradients_teacher_does_not():
    rng = np.random.default_rng(4)
    student, teacher = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 6))
    kernel = rng.standard_normal((4, 6))

    def loss(kernel, teacher):
        return hidden.layer_pairs_loss(
            student, teacher, pairs=[(0, 0), (1, 1)], loss_fn=hidden.mse, projections=[kernel] * 2
        ).sum()

    grad_kernel, grad_teacher = jax.grad(loss, argnums=(0, 1))(kernel, teacher)
    assert np.all(np.isfinite(grad_kernel)) and np.any(np.asarray(grad_kernel) != 0)
    assert np.all(np.asarray(grad_teacher) == 0)


def test_layer_pairs_bad_input_raises():
    layers = [np.zeros((2, 3))] * 2
    with pytest.raises(ValueError, match="at least one"):
        hidden.layer_pairs_loss(layers, layers, pairs=[])
    with pytest.raises(ValueError, match="out of range"):
        hidden.layer_pairs_loss(layers, layers, pairs=[(0, 2)])
    with pytest.raises(ValueError, match="projections has 1 entries"):
        hidden.layer_pairs_loss(layers, layers, pairs=[(0, 0), (1, 1)], projections=[None])


@jax.jit
def _values_and_grads(s, t, where):
    return [jax.value_and_grad(lambda s: fn(s, t, where=where).sum())(s) for fn, _ in REFERENCES.values()]


_states = hnp.arrays(np.float32, (3, D), elements=st.floats(-1e4, 1e4, width=32))


@settings(max_examples=30, deadline=None)
@given(s=_states, t=_states, where=hnp.arrays(np.bool_, (3,)))
def test_property_finite_on_extreme_states(s, t, where):
    for value, grad in _values_and_grads(s, t, where):
        assert np.isfinite(value) and value >= -1e-5
        assert np.all(np.isfinite(grad))


@settings(max_examples=20, deadline=None)
@given(s=_states, t=_states, pad=hnp.arrays(np.float32, (2, D), elements=st.floats(-1e4, 1e4, width=32)))
def test_property_padding_invariance(s, t, pad):
    padded = _values_and_grads(np.concatenate([s, pad]), np.concatenate([t, pad]), np.array([True] * 3 + [False] * 2))
    for (value, grad), (value0, grad0) in zip(padded, _values_and_grads(s, t, np.ones(3, bool)), strict=True):
        np.testing.assert_allclose(value, value0, rtol=1e-6)
        np.testing.assert_allclose(grad[:3], grad0, rtol=1e-6)
        np.testing.assert_array_equal(grad[3:], 0)
