import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lnemo import ope
from tests.ope.conftest import make_world


def coverage_run(world, num_seeds, num_sessions):
    model = ope.PositionBased(ope.pbm_power(world.num_slots))
    k = world.num_slots
    rho_0 = ope.pl_marginals_exact(world.logging_scores, where=world.where, num_slots=k)
    rho_a = ope.pl_marginals_exact(world.target_scores, where=world.where, num_slots=k)
    rho_b = ope.pl_marginals_exact(0.5 * world.target_scores, where=world.where, num_slots=k)

    def one(key):
        s = ope.simulate_sessions(key, ope.PlackettLuce(), world.logging_scores, world.attractiveness, model,
                                  where_CxN=world.where, num_sessions=num_sessions, num_slots=k)
        lg = ope.gather_logged(rho_0, s)
        a = ope.ip_ips(s.clicks_SxK, ope.gather_logged(rho_a, s), lg, where=s.where_SxK)
        b = ope.ip_ips(s.clicks_SxK, ope.gather_logged(rho_b, s), lg, where=s.where_SxK)
        d = ope.paired_difference(a, b)
        return ope.normal_interval(a), ope.normal_interval(d), a.stderr, b.stderr, d.stderr

    def truth(scores):
        return ope.true_value(ope.PlackettLuce(marginals_fn=ope.pl_marginals_exact), scores, world.attractiveness,
                              model, where_CxN=world.where, num_slots=k).value

    out = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(11), num_seeds))
    return out, jax.jit(jax.vmap(truth))(jnp.stack([world.target_scores, 0.5 * world.target_scores]))


def test_normal_and_paired_interval_coverage():
    (ci_a, ci_d, se_a, se_b, se_d), (va, vb) = coverage_run(make_world(2), num_seeds=300, num_sessions=400)
    cover_a = np.mean((ci_a.lower <= va) & (va <= ci_a.upper))
    cover_d = np.mean((ci_d.lower <= va - vb) & (va - vb <= ci_d.upper))
    # 300 seeds: the binomial s.e. of a 95 % coverage is 1.3 %.
    assert 0.91 <= cover_a <= 0.99, cover_a
    assert 0.91 <= cover_d <= 0.99, cover_d
    # Sharing the logs makes the paired standard error smaller than the unpaired combination.
    assert np.mean(se_d) < np.mean(np.sqrt(se_a**2 + se_b**2))


def test_bootstrap_matches_normal_interval_for_a_mean():
    x = jax.random.exponential(jax.random.key(0), (2000,))
    est = ope.Estimate(jnp.mean(x), jnp.std(x, ddof=1) / jnp.sqrt(2000.0), x)
    boot = jax.jit(ope.bootstrap_interval, static_argnames=("num_replicates", "batch_size"))(
        jax.random.key(1), x, num_replicates=1000, batch_size=250)
    normal = ope.normal_interval(est)
    np.testing.assert_allclose([boot.lower, boot.upper], [normal.lower, normal.upper], atol=0.01)
    # Masked sessions are ignored.
    padded = jnp.concatenate([x, jnp.full(100, 50.0)])
    where = jnp.arange(2100) < 2000
    boot_masked = jax.jit(lambda: ope.bootstrap_interval(jax.random.key(1), padded, where=where, num_replicates=200,
                                                         batch_size=100))()
    assert float(boot_masked.upper) < 1.2


def test_interval_bad_input():
    est = ope.Estimate(jnp.array(0.0), jnp.array(1.0), jnp.zeros(2))
    with pytest.raises(ValueError, match="level must lie in"):
        ope.normal_interval(est, level=1.5)
    with pytest.raises(ValueError, match="same sessions"):
        ope.paired_difference(est, ope.Estimate(jnp.array(0.0), jnp.array(1.0), jnp.zeros(3)))
