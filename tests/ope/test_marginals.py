import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lnemo import ope

# Eager calls dispatch op by op (slow); the tests jit once per shape.
quad = jax.jit(ope.pl_marginals_quadrature, static_argnames=("num_slots", "num_nodes", "tail"))
exact = jax.jit(ope.pl_marginals_exact, static_argnames=("num_slots",))
mc = jax.jit(ope.pl_marginals_mc, static_argnames=("num_slots", "num_samples"))
rb_mc = jax.jit(ope.pl_marginals_rb_mc, static_argnames=("num_slots", "num_samples"))


def test_hand_values():
    rho = quad(jnp.zeros(4), num_slots=2)
    np.testing.assert_allclose(rho, np.full((4, 2), 0.25), atol=1e-5)
    # Two valid items with weights e^0, e^1: the first slot is the softmax, the second its complement.
    p = 1 / (1 + np.e)
    scores, where = jnp.array([0.0, 1.0, 0.0, 0.0]), jnp.array([True, True, False, False])
    for fn in (quad, exact):
        np.testing.assert_allclose(fn(scores, where=where, num_slots=2)[:2], [[p, 1 - p], [1 - p, p]], atol=1e-6)


@pytest.mark.parametrize("sd", [0.3, 1.0, 3.0])
def test_quadrature_matches_enumeration_float64(sd):
    with jax.enable_x64(True):
        scores = sd * jax.random.normal(jax.random.key(1), (6, 7), jnp.float64)
        n_valid = jnp.array([7, 6, 5, 4, 2, 1])
        where = jnp.arange(7) < n_valid[:, None]
        by_quadrature = quad(scores, where=where, num_slots=4)
        by_enumeration = exact(scores, where=where, num_slots=4)
        assert by_quadrature.dtype == jnp.float64
        np.testing.assert_allclose(by_quadrature, by_enumeration, atol=1e-6)


def test_row_and_column_sums():
    scores = jax.random.normal(jax.random.key(2), (3, 20))
    rho = quad(scores, num_slots=5)
    np.testing.assert_allclose(rho.sum(-2), 1.0, atol=1e-4)
    assert float(rho.sum(-1).max()) <= 1 + 1e-5
    assert float(ope.column_sum_error(rho).max()) < 1e-4


def test_monte_carlo_and_rao_blackwell_agree_with_exact():
    scores = jnp.array([[0.5, -1.0, 2.0, 0.0, 1.0], [6.0, 5.0, 4.0, -12.0, -13.0]])
    truth = exact(scores, num_slots=3)
    by_mc = mc(jax.random.key(0), scores, num_slots=3, num_samples=20_000)
    by_rb = rb_mc(jax.random.key(0), scores, num_slots=3, num_samples=20_000)
    np.testing.assert_allclose(by_mc, truth, atol=0.015)
    np.testing.assert_allclose(by_rb, truth, atol=0.01)
    assert float(jnp.abs(by_rb - truth).max()) < float(jnp.abs(by_mc - truth).max())
    # Rao-Blackwellisation never gives an exact zero to a valid item; plain MC does for rare pairs.
    assert float(by_rb[1].min()) > 0
    assert float(by_mc[1, 3:].max()) == 0


def test_jit_equals_eager_and_leading_dims():
    scores = jax.random.normal(jax.random.key(3), (2, 3, 6))
    eager = ope.pl_marginals_quadrature(scores, num_slots=3)
    jitted = quad(scores, num_slots=3)
    np.testing.assert_allclose(eager, jitted, atol=1e-6)
    assert eager.shape == (2, 3, 6, 3)
    np.testing.assert_allclose(eager[1, 2], quad(scores.reshape(6, 6), num_slots=3)[5], atol=1e-6)


@pytest.mark.parametrize("fn", [quad, exact])
def test_masked_equals_sliced(fn):
    scores = jnp.array([0.3, -0.2, 1.1, 0.7, 9.0, -9.0])
    where = jnp.array([True, True, True, True, False, False])
    masked = fn(scores, where=where, num_slots=3)
    np.testing.assert_allclose(masked[:4], fn(scores[:4], num_slots=3), atol=1e-6)
    assert float(jnp.abs(masked[4:]).max()) == 0


def test_fewer_valid_items_than_slots():
    rho = quad(jnp.array([0.0, 1.0, 5.0, 0.0]), where=jnp.array([True, True, False, False]), num_slots=3)
    np.testing.assert_allclose(rho[:, 2], 0.0, atol=1e-6)
    np.testing.assert_allclose(rho[:2].sum(-1), 1.0, atol=1e-5)


def test_gradients_finite_including_all_masked():
    def loss(s, w):
        return jnp.sum(ope.pl_marginals_quadrature(s, where=w, num_slots=2) ** 2)

    grad = jax.jit(jax.grad(loss))
    s = jnp.array([0.1, 2.0, -1.0])
    for w in (jnp.array([True, True, False]), jnp.zeros(3, bool)):
        assert np.isfinite(np.asarray(grad(s, w))).all()
    np.testing.assert_allclose(grad(s, jnp.zeros(3, bool)), 0.0)


def test_sharded_equals_unsharded():
    mesh = jax.make_mesh((8,), ("q",), axis_types=(jax.sharding.AxisType.Auto,))
    scores = jax.random.normal(jax.random.key(4), (8, 6))
    sharded = jax.device_put(scores, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("q")))
    out = quad(sharded, num_slots=2)
    np.testing.assert_allclose(out, quad(scores, num_slots=2), atol=1e-6)


def test_pair_marginals_diagonal_and_margins():
    scores = jnp.array([0.2, -0.5, 1.0, 0.0])
    pairs = jax.jit(ope.pl_pair_marginals_exact, static_argnames="num_slots")(scores, num_slots=2)
    rho = exact(scores, num_slots=2)
    np.testing.assert_allclose(jnp.diag(pairs), rho.reshape(-1), atol=1e-6)
    # Summing P(y_k = a, y_l = b) over b gives rho(a, k) for any other slot l.
    np.testing.assert_allclose(pairs.reshape(4, 2, 4, 2)[:, 0, :, 1].sum(-1), rho[:, 0], atol=1e-6)


def test_enumeration_rejects_large_lists():
    with pytest.raises(ValueError, match="at most 8 items"):
        ope.pl_marginals_exact(jnp.zeros(9), num_slots=2)


def test_gumbel_top_k_rejects_too_many_slots():
    with pytest.raises(ValueError, match="num_slots=4"):
        ope.gumbel_top_k(jax.random.key(0), jnp.zeros(3), num_slots=4)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-30, 30), min_size=6, max_size=6), st.integers(0, 4))
def test_property_finite_and_normalised(values, num_padded):
    scores = jnp.asarray(values, jnp.float32)
    where = jnp.arange(6) < 6 - num_padded
    rho = quad(scores, where=where, num_slots=2)
    assert np.isfinite(np.asarray(rho)).all()
    assert float(rho.min()) >= -1e-6
    assert float(rho.sum(-1).max()) <= 1 + 2e-2
    np.testing.assert_allclose(rho[:, 0].sum(), 1.0, atol=1e-5)
