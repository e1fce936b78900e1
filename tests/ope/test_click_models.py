import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lnemo import ope

MODELS = [ope.PositionBased(ope.pbm_eyetrack(4, severity=2.0)), ope.TrustBias.oosterhuis_default(4),
          ope.TrustBias.oosterhuis_long(4), ope.TrustBias.ultra(4), ope.Cascade(), ope.DependentClick.power(4),
          ope.UserBrowsing.distance_power(4)]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_expected_clicks_match_samples(model):
    gamma = jnp.array([[0.9, 0.3, 0.6, 0.2], [0.1, 0.8, 0.0, 0.0]])
    where = jnp.array([[True] * 4, [True, True, False, False]])

    @jax.jit
    def run(key):
        many = jnp.broadcast_to(gamma, (50_000, 2, 4))
        return model.expected_clicks(gamma, where=where), model.sample(key, many, where=where).mean(0)

    expected, sampled = run(jax.random.key(0))
    np.testing.assert_allclose(sampled, expected, atol=0.01)
    np.testing.assert_array_equal(expected[1, 2:], 0.0)


def test_hand_values():
    g = jnp.array([0.5, 0.5, 0.5])
    np.testing.assert_allclose(ope.Cascade().expected_clicks(g), [0.5, 0.25, 0.125], rtol=1e-6)
    np.testing.assert_allclose(ope.PositionBased(ope.pbm_power(3)).expected_clicks(g), [0.5, 0.25, 0.5 / 3], rtol=1e-6)
    # DCM with lambda = 1 never stops: every slot is examined.
    np.testing.assert_allclose(ope.DependentClick(jnp.ones(3)).expected_clicks(g), g, rtol=1e-6)
    # UBM with a constant table is a PBM.
    np.testing.assert_allclose(ope.UserBrowsing(jnp.full((3, 3), 0.7)).expected_clicks(g), 0.35 * np.ones(3), rtol=1e-6)


def test_presets():
    np.testing.assert_allclose(ope.pbm_eyetrack(12)[-3:], [0.06, 0.06, 0.06], rtol=1e-6)
    np.testing.assert_allclose(ope.pbm_eyetrack(2, severity=2.0), [0.68**2, 0.61**2], rtol=1e-6)
    np.testing.assert_allclose(ope.pbm_dcg(3), [1.0, 1 / np.log2(3), 0.5], rtol=1e-6)
    np.testing.assert_allclose(ope.attractiveness_noise(jnp.array([0, 4, 2])), [0.1, 1.0, 0.1 + 0.9 * 3 / 15],
                               rtol=1e-6)
    np.testing.assert_allclose(ope.attractiveness_linear(jnp.array([0, 2, 4])), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(ope.attractiveness_squared(jnp.array([2])), [0.25])
    np.testing.assert_allclose(ope.attractiveness_binary(jnp.array([2, 3])), [0.1, 1.0])
    tb = ope.TrustBias.oosterhuis_long(2)
    np.testing.assert_allclose(tb.theta, [1.0, (1.2) ** -2], rtol=1e-6)


def test_item_position_ctr_consistent_with_expected_clicks():
    model = ope.TrustBias.oosterhuis_default(3)
    gamma_N = jnp.array([0.2, 0.7, 0.4])
    u = model.item_position_ctr(gamma_N)
    listed = model.expected_clicks(gamma_N[jnp.array([1, 2, 0])])
    np.testing.assert_allclose(listed, [u[1, 0], u[2, 1], u[0, 2]], rtol=1e-6)
