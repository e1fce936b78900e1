import jax
import jax.numpy as jnp
import numpy as np

from lnemo import ope
from tests.ope.conftest import make_world


def test_make_ltr_data_shapes_and_grades():
    d = jax.jit(lambda key: ope.make_ltr_data(key, num_queries=50, num_items=8, num_features=5, min_items=4))(
        jax.random.key(0))
    assert d.features_CxNxF.shape == (50, 8, 5)
    assert set(np.unique(d.labels_CxN).tolist()) <= set(range(5))
    assert int(d.where_CxN.sum(-1).min()) >= 4
    counts = np.bincount(np.asarray(d.labels_CxN)[np.asarray(d.where_CxN)], minlength=5)
    assert counts[0] > counts[4] > 0
    w = jax.jit(lambda key: ope.weak_ranker_weights(key, d, feature_fraction=0.4, query_fraction=0.5))(
        jax.random.key(1))
    assert int((w != 0).sum()) == 2


def test_true_value_exact_paths_agree_with_monte_carlo():
    world = make_world(1)
    k = world.num_slots
    for model in (ope.Cascade(), ope.PositionBased(ope.pbm_power(k))):
        exact = jax.jit(lambda: ope.true_value(ope.PlackettLuce(), world.target_scores, world.attractiveness, model,
                                               where_CxN=world.where, num_slots=k))()
        # Padding to 9 items disables enumeration (N > 8) and takes the Monte Carlo path.
        mc = jax.jit(lambda: ope.true_value(ope.PlackettLuce(), jnp.pad(world.target_scores, ((0, 0), (0, 4))),
                                            jnp.pad(world.attractiveness, ((0, 0), (0, 4))), model,
                                            where_CxN=jnp.pad(world.where, ((0, 0), (0, 4))), num_slots=k,
                                            key=jax.random.key(0), num_samples=50_000))()
        if isinstance(model, ope.Cascade):
            assert float(mc.stderr) > 0
            assert abs(float(mc.value - exact.value)) < 4 * float(mc.stderr)
        else:
            np.testing.assert_allclose(mc.value, exact.value, rtol=1e-5)


def test_simulated_clicks_average_to_true_value():
    world = make_world(4)
    model = ope.DependentClick.power(world.num_slots)
    ranker = ope.EpsilonGreedy(0.3)
    truth = jax.jit(lambda: ope.true_value(ranker, world.logging_scores, world.attractiveness, model,
                                           where_CxN=world.where, num_slots=world.num_slots, key=jax.random.key(3),
                                           num_samples=20_000))()

    @jax.jit
    def run(key):
        s = ope.simulate_sessions(key, ranker, world.logging_scores, world.attractiveness, model,
                                  where_CxN=world.where, num_sessions=50_000, num_slots=world.num_slots)
        return ope.naive(s.clicks_SxK)

    est = run(jax.random.key(5))
    assert abs(float(est.value - truth.value)) < 4 * float(jnp.hypot(est.stderr, truth.stderr))
