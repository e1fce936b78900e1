import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lnemo import ope

slot_log_probs = jax.jit(ope.pl_slot_log_probs)


def test_slot_log_probs_hand_value_and_padding():
    lp = slot_log_probs(jnp.zeros(3), jnp.array([2, 0, -1]))
    np.testing.assert_allclose(lp, [np.log(1 / 3), np.log(1 / 2), 0.0], atol=1e-6)
    masked = slot_log_probs(jnp.array([0.0, 0.0, 0.0, 7.0]), jnp.array([2, 0, -1]), where=jnp.array([1, 1, 1, 0], bool))
    np.testing.assert_allclose(masked, lp, atol=1e-6)


def test_slot_log_probs_grad_finite_on_empty_lists():
    grad = jax.jit(jax.grad(lambda s: ope.pl_slot_log_probs(s, jnp.array([-1, -1])).sum()))
    np.testing.assert_allclose(grad(jnp.array([1.0, 2.0])), 0.0)


@pytest.mark.parametrize("ranker", [ope.PlackettLuce(temperature=0.7), ope.EpsilonGreedy(0.3),
                                    ope.EpsilonGreedy(0.2, ope.PlackettLuce()), ope.Deterministic()])
def test_sample_frequencies_match_marginals_and_prefix_probs(ranker):
    scores = jnp.array([0.4, -0.3, 1.2, 0.0, 0.0])
    where = jnp.array([True, True, True, True, False])
    n_samples = 20_000

    @jax.jit
    def run(key):
        items = ranker.sample(key, jnp.broadcast_to(scores, (n_samples, 5)), where=where, num_slots=2)
        rho = ranker.marginals(scores, where=where, num_slots=2)
        return items, rho, ranker.prefix_log_probs(scores, jnp.array([2, 0]), where=where)

    items, rho, prefix = run(jax.random.key(0))
    freq = np.stack([(np.asarray(items)[:, k:k + 1] == np.arange(5)).mean(0) for k in range(2)], axis=1)
    np.testing.assert_allclose(freq, rho, atol=0.015)
    assert (np.asarray(items) != 4).all()
    first = (np.asarray(items)[:, 0] == 2)
    np.testing.assert_allclose(first.mean(), np.exp(prefix[0]), atol=0.015)
    np.testing.assert_allclose((first & (np.asarray(items)[:, 1] == 0)).mean(), np.exp(prefix[1]), atol=0.015)


def test_deterministic_prefix_is_zero_then_minus_inf():
    lp = ope.Deterministic().prefix_log_probs(jnp.array([0.1, 0.9, 0.5]), jnp.array([1, 0]))
    np.testing.assert_array_equal(lp, [0.0, -np.inf])
