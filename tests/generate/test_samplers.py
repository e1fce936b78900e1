import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lnemo.generate import Categorical, Chain, Greedy, Identity, Temperature, TopK, TopP

NEG = -np.inf


def test_transforms_hand_values():
    z = jnp.array([1.0, 3.0, 2.0, 0.0])
    np.testing.assert_array_equal(Temperature(2.0)(z), [0.5, 1.5, 1.0, 0.0])
    np.testing.assert_array_equal(TopK(2)(z), [NEG, 3.0, 2.0, NEG])
    np.testing.assert_array_equal(TopK(10)(z), z)
    logp = jnp.log(jnp.array([0.1, 0.6, 0.3]))
    # sorted: 0.6 (mass before 0), 0.3 (mass before 0.6), 0.1 (mass before 0.9)
    np.testing.assert_array_equal(jnp.isfinite(TopP(0.5)(logp)), [False, True, False])
    np.testing.assert_array_equal(jnp.isfinite(TopP(0.7)(logp)), [False, True, True])
    np.testing.assert_array_equal(jnp.isfinite(TopP(1.0)(logp)), [True, True, True])
    np.testing.assert_array_equal(Chain((Temperature(2.0), TopK(1)))(z), [NEG, 1.5, NEG, NEG])


def test_top_k_keeps_ties():
    np.testing.assert_array_equal(jnp.isfinite(TopK(1)(jnp.array([2.0, 2.0, 1.0]))), [True, True, False])


def test_leading_batch_dims_and_jit():
    z = jax.random.normal(jax.random.key(0), (2, 3, 7))
    for t in (Temperature(0.7), TopK(3), TopP(0.8), Chain((TopK(4), TopP(0.9)))):
        out = t(z)
        assert out.shape == z.shape
        np.testing.assert_array_equal(jax.jit(t)(z), out)
        np.testing.assert_array_equal(out[1, 2], t(z[1, 2]))


def test_greedy_and_categorical_logprobs():
    z = jnp.array([[0.0, 2.0, 1.0], [5.0, 0.0, 0.0]])
    g = Greedy()(z, jax.random.key(0))
    np.testing.assert_array_equal(g.tokens, [1, 0])
    np.testing.assert_array_equal(g.logprobs, [0.0, 0.0])
    sampler = Categorical(Temperature(0.5))
    out = sampler(z, jax.random.key(1))
    expect = jax.nn.log_softmax(z / 0.5)[jnp.arange(2), out.tokens]
    np.testing.assert_allclose(out.logprobs, expect, rtol=1e-6)
    np.testing.assert_array_equal(Categorical(TopK(1))(z, jax.random.key(2)).tokens, g.tokens)
    np.testing.assert_array_equal(Categorical(TopK(1))(z, jax.random.key(2)).logprobs, [0.0, 0.0])


def test_categorical_frequencies_match_the_distribution():
    probs = jnp.array([0.5, 0.3, 0.2, 0.0])
    z = jnp.broadcast_to(jnp.log(probs), (20000, 4))
    tokens = Categorical(Identity())(z, jax.random.key(3)).tokens
    freq = np.bincount(np.asarray(tokens), minlength=4) / 20000
    se = np.sqrt(np.asarray(probs) * (1 - np.asarray(probs)) / 20000)
    assert np.all(np.abs(freq - np.asarray(probs)) <= 4 * se + 1e-9)
    # top-p 0.6 keeps {0.5, 0.3} renormalised to 5/8, 3/8
    tokens = Categorical(TopP(0.6))(z, jax.random.key(4)).tokens
    freq = np.bincount(np.asarray(tokens), minlength=4) / 20000
    np.testing.assert_allclose(freq, [5 / 8, 3 / 8, 0, 0], atol=0.015)


def test_samplers_hash_by_value():
    a = Categorical(Chain((Temperature(0.5), TopK(3), TopP(0.9))))
    b = Categorical(Chain([Temperature(0.5), TopK(3), TopP(0.9)]))
    assert a == b and hash(a) == hash(b)
    assert a != Categorical(Chain((Temperature(0.6), TopK(3), TopP(0.9))))


@pytest.mark.parametrize("bad", [lambda: Temperature(0.0), lambda: TopK(0), lambda: TopP(0.0), lambda: TopP(1.5)])
def test_bad_settings_raise(bad):
    with pytest.raises(ValueError, match=r"Temperature|TopK|TopP"):
        bad()


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(-1e30, 1e30, allow_nan=False), min_size=6, max_size=6),
       st.floats(0.01, 1.0), st.integers(1, 8), st.floats(0.05, 10.0))
def test_extreme_logits_give_finite_logprobs(values, p, k, temp):
    z = jnp.array([values], jnp.float32)
    out = Categorical(Chain((Temperature(temp), TopK(k), TopP(p))))(z, jax.random.key(0))
    assert np.isfinite(out.logprobs).all() and out.logprobs[0] <= 0
    assert np.isfinite(z[0, out.tokens[0]])
