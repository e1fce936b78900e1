import jax
import jax.numpy as jnp
import numpy as np

from lnemo.train import cast_floating, with_compute_dtype


def test_cast_floating_keeps_integers():
    tree = {"w": jnp.ones(2, jnp.float32), "ids": jnp.arange(2), "flag": jnp.array(True)}
    out = cast_floating(tree, jnp.bfloat16)
    assert (out["w"].dtype, out["ids"].dtype, out["flag"].dtype) == (jnp.bfloat16, tree["ids"].dtype, jnp.bool_)


def test_with_compute_dtype_computes_in_bf16_and_returns_float32_grads():
    dtypes = []

    def loss_fn(params, batch, rng):
        dtypes.append({p.dtype for p in jax.tree.leaves(params)})
        y = jnp.dot(batch["x"], params["w"], preferred_element_type=jnp.float32) + params["b"]
        return jnp.sum(jnp.square(y)), {"tokens": jnp.int32(batch["x"].shape[0])}

    params = {"w": jax.random.normal(jax.random.key(0), (8, 4)), "b": jnp.linspace(-1.0, 1.0, 4)}
    batch = {"x": jax.random.normal(jax.random.key(1), (16, 8)).astype(jnp.bfloat16)}
    grad_fn = jax.grad(lambda p, f: f(p, batch, None)[0])
    grads_bf16 = grad_fn(params, with_compute_dtype(loss_fn, jnp.bfloat16))
    grads_fp32 = grad_fn(params, loss_fn)
    assert dtypes == [{jnp.dtype(jnp.bfloat16)}, {jnp.dtype(jnp.float32)}]
    assert {g.dtype for g in jax.tree.leaves(grads_bf16)} == {jnp.dtype(jnp.float32)}
    for a, b in zip(jax.tree.leaves(grads_bf16), jax.tree.leaves(grads_fp32), strict=True):
        np.testing.assert_allclose(a, b, rtol=0.05, atol=0.02 * float(jnp.max(jnp.abs(b))))
        assert not np.array_equal(a, b)  # the bf16 rounding is really there
