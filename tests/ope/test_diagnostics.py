import jax.numpy as jnp
import numpy as np

from lnemo import ope


def test_weight_diagnostics_hand_values():
    w = jnp.array([[1.0, 2.0], [1.0, 4.0], [9.0, 9.0]])
    where = jnp.array([[True, True], [True, True], [False, False]])
    d = ope.weight_diagnostics(w, where=where, logging_SxK=jnp.array([[0.5, 1e-4], [0.2, 0.1], [1.0, 1.0]]))
    np.testing.assert_allclose(d.ess, 64 / 22, rtol=1e-6)
    np.testing.assert_allclose(d.ess_per_slot_K, [2.0, 36 / 20], rtol=1e-6)
    np.testing.assert_allclose(d.mean_weight_K, [1.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(d.max_weight, 4.0)
    np.testing.assert_allclose(d.quantiles[0], 1.5)
    np.testing.assert_allclose(d.tiny_share, 0.25)
    assert np.isnan(ope.weight_diagnostics(w).tiny_share)


def test_kish_ess_all_masked_is_zero():
    assert float(ope.kish_ess(jnp.ones(3), where=jnp.zeros(3, bool))) == 0.0


def test_off_support_clipping_and_column_sums():
    rho_e = jnp.array([[[0.7, 0.3], [0.3, 0.7]]])
    rho_0 = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
    np.testing.assert_allclose(ope.off_support_mass(rho_e, rho_0), [0.6])
    np.testing.assert_allclose(ope.clipping_bias_bound(jnp.array([[3.0, 1.0], [5.0, 0.0]]), 2.0,
                                                       where=jnp.array([[True, True], [False, False]])), [1.0, 0.0])
    np.testing.assert_allclose(ope.column_sum_error(rho_e), [0.0], atol=1e-7)
    np.testing.assert_allclose(ope.column_sum_error(jnp.array([[[0.5, 0.2], [0.4, 0.0]]]),
                                                    where=jnp.array([[True, False]])), [0.1], rtol=1e-5)


def test_marginal_dispersion_is_one_when_calibrated_and_large_when_misspecified():
    import jax

    from tests.ope.conftest import make_world

    world = make_world(6, contexts=30, items=6, slots=3)
    k = world.num_slots

    @jax.jit
    def run(key):
        out = []
        for logger in (ope.PlackettLuce(), ope.EpsilonGreedy(0.3)):
            s = ope.simulate_sessions(key, logger, world.logging_scores, world.attractiveness, ope.Cascade(),
                                      where_CxN=world.where, num_sessions=60_000, num_slots=k)
            emp = ope.empirical_marginals(s, num_contexts=30, num_items=6)
            counts = jnp.bincount(s.context_S, length=30)
            pl = ope.PlackettLuce().marginals(world.logging_scores, where=world.where, num_slots=k)
            out.append(ope.marginal_dispersion(pl, emp, counts, where=world.where))
        return out

    calibrated, misspecified = run(jax.random.key(0))
    # ~150 degrees of freedom per slot: the ratio's s.d. is about 0.12.
    np.testing.assert_allclose(calibrated, 1.0, atol=0.35)
    assert float(misspecified.min()) > 10
