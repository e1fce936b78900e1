"""Tests for lnemo.losses.lm: token log-probs, cross-entropy, z-loss."""

import math

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lnemo.losses import lm

# Tests call jitted losses (one compile per shape instead of one per primitive); the eager path is
# covered by the jit == eager tests.
token_cross_entropy = jax.jit(lm.token_cross_entropy, static_argnames="axis")
token_logprobs = jax.jit(lm.token_logprobs, static_argnames="axis")
z_loss = jax.jit(lm.z_loss, static_argnames="axis")


def _np_logprobs(logits, tokens):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return np.take_along_axis(logp, np.asarray(tokens)[..., None], -1)[..., 0]


def _np_lse(logits):
    logits = np.asarray(logits, np.float64)
    peak = logits.max(-1)
    return peak + np.log(np.exp(logits - peak[..., None]).sum(-1))


def _data(seed=0, shape=(3, 5), vocab=7, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = (scale * rng.standard_normal((*shape, vocab))).astype(np.float32)
    tokens = rng.integers(0, vocab, shape).astype(np.int32)
    where = rng.random(shape) < 0.6
    return jnp.asarray(logits), jnp.asarray(tokens), jnp.asarray(where)


def test_hand_values():
    logits = jnp.log(jnp.array([[0.25, 0.75], [0.5, 0.5]]))
    np.testing.assert_allclose(token_logprobs(logits, jnp.array([1, 0])), [math.log(0.75), math.log(0.5)], rtol=1e-6)
    np.testing.assert_allclose(token_cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3])), [math.log(4)] * 2, rtol=1e-6)
    np.testing.assert_allclose(z_loss(jnp.zeros((1, 4))), [math.log(4) ** 2], rtol=1e-6)
    np.testing.assert_allclose(z_loss(jnp.array([[1.0, 1.0]])), [(1 + math.log(2)) ** 2], rtol=1e-6)


def test_float64_reference_and_ce_is_negative_logprob():
    logits, tokens, _ = _data(scale=30.0)
    np.testing.assert_allclose(token_logprobs(logits, tokens), _np_logprobs(logits, tokens), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(token_cross_entropy(logits, tokens), -_np_logprobs(logits, tokens), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(z_loss(logits), _np_lse(logits) ** 2, rtol=1e-5)


def test_float32_output_from_bfloat16_logits():
    logits, tokens, _ = _data()
    out = token_cross_entropy(logits.astype(jnp.bfloat16), tokens)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(
        out, -_np_logprobs(np.asarray(logits.astype(jnp.bfloat16), np.float32), tokens), atol=1e-5
    )


def test_jit_equals_eager():
    logits, tokens, where = _data()
    np.testing.assert_allclose(
        token_logprobs(logits, tokens, where=where), lm.token_logprobs(logits, tokens, where=where), rtol=1e-6
    )
    np.testing.assert_allclose(z_loss(logits, where=where), lm.z_loss(logits, where=where), rtol=1e-6)


def test_masked_equals_sliced():
    logits, tokens, where = (np.asarray(a) for a in _data())
    full = token_cross_entropy(logits, tokens, where=where)
    mask = where
    np.testing.assert_allclose(full[mask], token_cross_entropy(logits[mask], tokens[mask]), rtol=1e-6)
    assert np.all(np.asarray(full)[~mask] == 0)
    np.testing.assert_allclose(z_loss(logits, where=where)[mask], z_loss(logits[mask]), rtol=1e-6)


def test_leading_batch_dims_and_axis():
    logits, tokens, _ = _data(shape=(2, 3, 4))
    flat = token_logprobs(logits.reshape(-1, 7), tokens.reshape(-1))
    np.testing.assert_allclose(token_logprobs(logits, tokens), flat.reshape(2, 3, 4), rtol=1e-6)
    np.testing.assert_allclose(
        token_logprobs(jnp.moveaxis(logits, -1, 1), tokens, axis=1), flat.reshape(2, 3, 4), rtol=1e-6
    )
    np.testing.assert_allclose(token_logprobs(logits[0, 0, 0], tokens[0, 0, 0]), flat[0], rtol=1e-6)


def test_all_masked_gives_zero_and_finite_grads_even_with_garbage():
    logits = jnp.full((2, 3, 5), jnp.nan).at[0].set(jnp.inf)
    labels = jnp.full((2, 3), -100)
    where = jnp.zeros((2, 3), bool)

    def total(logits):
        return jnp.sum(token_cross_entropy(logits, labels, where=where) + z_loss(logits, where=where))

    value, grad = jax.value_and_grad(total)(logits)
    assert value == 0
    assert np.all(np.asarray(grad) == 0)


def test_float_labels_raise():
    with pytest.raises(ValueError, match="integers"):
        lm.token_logprobs(jnp.zeros((2, 3)), jnp.zeros((2,)))


def test_gradient_is_softmax_minus_onehot():
    logits, tokens, _ = _data(shape=(4,))
    grad = jax.grad(lambda z: token_cross_entropy(z, tokens).sum())(logits)
    np.testing.assert_allclose(grad, jax.nn.softmax(logits) - jax.nn.one_hot(tokens, 7), atol=1e-6)


_VOCAB = 6


@jax.jit
@jax.value_and_grad
def _value_and_grad(logits, tokens, where):
    return jnp.sum(lm.token_cross_entropy(logits, tokens, where=where) + 1e-4 * lm.z_loss(logits, where=where))


_logit = st.floats(-1e4, 1e4, width=32)


@settings(max_examples=30, deadline=None)
@given(
    logits=hnp.arrays(np.float32, (4, _VOCAB), elements=_logit),
    banned=hnp.arrays(np.bool_, (_VOCAB,)),
    tokens=hnp.arrays(np.int32, (4,), elements=st.integers(0, _VOCAB - 1)),
    where=hnp.arrays(np.bool_, (4,)),
)
def test_property_finite_on_extreme_and_masked_vocab(logits, banned, tokens, where):
    banned[0] = False  # at least one allowed token per row
    tokens = np.where(banned[tokens], 0, tokens)
    logits = np.where(banned, -np.inf, logits)

    value, grad = _value_and_grad(jnp.asarray(logits), tokens, where)
    assert np.isfinite(value)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(
        token_logprobs(logits, tokens, where=where)[where], _np_logprobs(logits, tokens)[where], rtol=1e-4, atol=1e-2
    )


@settings(max_examples=20, deadline=None)
@given(
    logits=hnp.arrays(np.float32, (3, _VOCAB), elements=st.floats(-50, 50, width=32)),
    padding=hnp.arrays(np.float32, (2, _VOCAB), elements=st.floats(-1e4, 1e4, width=32)),
    tokens=hnp.arrays(np.int32, (3,), elements=st.integers(0, _VOCAB - 1)),
)
def test_property_padding_invariance(logits, padding, tokens):
    padded = np.concatenate([logits, padding])
    padded_tokens = np.concatenate([tokens, [-100, 10**6]]).astype(np.int32)
    where = np.array([True] * 3 + [False] * 2)
    out = token_cross_entropy(padded, padded_tokens, where=where)
    np.testing.assert_array_equal(out[:3], token_cross_entropy(logits, tokens))
    np.testing.assert_array_equal(out[3:], 0)
