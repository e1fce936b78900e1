import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lnemo.train import adamw, decay_mask, warmup_cosine


def test_warmup_cosine_by_hand():
    schedule = warmup_cosine(1.0, warmup_steps=10, total_steps=110, final_lr_ratio=0.1)
    np.testing.assert_allclose(
        [schedule(0), schedule(5), schedule(10), schedule(60), schedule(110), schedule(200)],
        [0.0, 0.5, 1.0, 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * 0.5)), 0.1, 0.1],
        rtol=1e-6,
        atol=1e-7,
    )


@pytest.mark.parametrize(("warmup", "total"), [(-1, 10), (10, 10), (20, 10)])
def test_warmup_cosine_errors(warmup, total):
    with pytest.raises(ValueError, match=f"warmup_steps={warmup}, total_steps={total}"):
        warmup_cosine(1.0, warmup_steps=warmup, total_steps=total)


def test_decay_mask_excludes_vectors():
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3), "norm": {"scale": jnp.ones(3)}, "q": jnp.ones((2, 2, 2))}
    assert decay_mask(params) == {"w": True, "b": False, "norm": {"scale": False}, "q": True}


def test_adamw_decays_only_matrices():
    params = {"w": jnp.full((2, 2), 2.0), "b": jnp.full((2,), 2.0)}
    tx = adamw(0.1, weight_decay=0.5)
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.1 * 0.5 * 2.0)
    np.testing.assert_array_equal(updates["b"], 0.0)


def test_adamw_clips_global_norm():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    grads = {"w": jnp.array([[3.0, -1.0], [0.5, 2.0]]), "b": jnp.array([40.0, -7.0])}
    norm = float(jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads))))
    clipped, plain = adamw(0.1, clip_norm=1.0, eps=1e-3), adamw(0.1, clip_norm=None, eps=1e-3)
    got, _ = clipped.update(grads, clipped.init(params), params)
    want, _ = plain.update(jax.tree.map(lambda g: g / norm, grads), plain.init(params), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
