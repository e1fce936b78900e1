"""Sharded == unsharded for the unchunked losses: batch over 2 devices, vocabulary (or width) over 4."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from lnemo import losses


@jax.jit
def _everything(s, t, labels, where):
    divergences = [
        losses.forward_kl,
        losses.reverse_kl,
        losses.generalized_jsd,
        losses.skew_kl,
        losses.skew_reverse_kl,
        losses.total_variation,
        functools.partial(losses.top_k_distill, k=3, tail=True),
    ]
    per_token = [fn(s, t, where=where) for fn in divergences]
    per_token += [
        losses.token_cross_entropy(s, labels, where=where),
        losses.z_loss(s, where=where),
        losses.cosine_distance(s, t, where=where),
        losses.normalized_mse(s, t, where=where),
    ]
    total = sum(jnp.sum(x) for x in per_token)
    grad = jax.grad(lambda s: sum(jnp.sum(fn(s, t, where=where)) for fn in divergences))(s)
    return per_token, total, grad


def test_sharded_equals_unsharded():
    rng = np.random.default_rng(0)
    s, t = (rng.standard_normal((4, 3, 16)).astype(np.float32) * 3 for _ in range(2))
    labels = rng.integers(0, 16, (4, 3)).astype(np.int32)
    where = rng.random((4, 3)) < 0.7
    mesh = jax.make_mesh((2, 4), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)

    def put(x, *axes):
        return jax.device_put(x, NamedSharding(mesh, PartitionSpec(*axes)))

    sharded = (put(s, "data", None, "model"), put(t, "data", None, "model"), put(labels, "data"), put(where, "data"))
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
        _everything(s, t, labels, where),
        _everything(*sharded),
    )
