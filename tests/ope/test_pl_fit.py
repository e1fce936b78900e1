import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lnemo import ope


def test_topk_nll_hand_value_and_candidate_mask():
    s = ope.Sessions(jnp.array([[0, 1]]), jnp.zeros((1, 2)), jnp.array([0]))
    np.testing.assert_allclose(ope.pl_topk_nll(jnp.zeros((1, 3)), s, where_CxN=jnp.ones((1, 3), bool)),
                               [np.log(3) + np.log(2)], rtol=1e-6)
    # Restricting the candidate set to the displayed items gives P(order | displayed set).
    shown_only = jnp.array([[True, True, False]])
    np.testing.assert_allclose(ope.pl_topk_nll(jnp.zeros((1, 3)), s, where_CxN=shown_only), [np.log(2)], rtol=1e-6)


@pytest.mark.parametrize("model_name", ["linear", "mlp", "table"])
def test_fit_recovers_logging_marginals(model_name):
    key = jax.random.key(0)
    c, n, k, f = 6, 6, 3, 4
    features = jax.random.normal(key, (c, n, f))
    true_scores = features @ jnp.array([1.0, -0.5, 0.8, 0.0])
    where = jnp.ones((c, n), bool)
    model = {"linear": ope.LinearScores(f), "mlp": ope.MLPScores(f, 16), "table": ope.TableScores(c, n)}[model_name]

    @jax.jit
    def run(key):
        ctx = jax.random.randint(key, (6000,), 0, c)
        items = ope.PlackettLuce().sample(jax.random.key(1), true_scores[ctx], num_slots=k)
        s = ope.Sessions(items, jnp.zeros(items.shape), ctx)
        params, losses = ope.fit_plackett_luce(model, model.init(key), s, ope.Candidates(where, features),
                                               optimizer=optax.adam(0.05), num_steps=300)
        fitted = ope.PlackettLuce().marginals(model.apply(params, features), where=where, num_slots=k)
        truth = ope.PlackettLuce().marginals(true_scores, where=where, num_slots=k)
        return losses, fitted, truth

    losses, fitted, truth = run(key)
    assert float(losses[-1]) < float(losses[0]) - 0.5
    np.testing.assert_allclose(fitted, truth, atol=0.05 if model_name != "table" else 0.08)
