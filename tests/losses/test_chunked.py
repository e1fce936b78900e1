"""Tests for lnemo.losses.chunked: chunked == unchunked (values and gradients), bounded memory, sharding."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lnemo.losses import chunked as ch
from lnemo.losses import distill, hidden, lm

B, T, D, V = 2, 11, 6, 13

LOGIT_LOSSES = {
    "forward_kl": distill.forward_kl,
    "reverse_kl": distill.reverse_kl,
    "jsd": functools.partial(distill.generalized_jsd, beta=0.3),
    "skew_kl": distill.skew_kl,
    "skew_reverse_kl": distill.skew_reverse_kl,
    "total_variation": distill.total_variation,
    "top_k_tail": functools.partial(distill.top_k_distill, k=4, tail=True),
    "tempered_kl": distill.with_temperature(distill.forward_kl, 2.0),
}


def _data(seed=0, lead=(B, T)):
    rng = np.random.default_rng(seed)
    return {
        "hs": rng.standard_normal((*lead, D)).astype(np.float32),
        "ws": rng.standard_normal((D, V)).astype(np.float32),
        "ht": rng.standard_normal((*lead, D + 2)).astype(np.float32),
        "wt": rng.standard_normal((D + 2, V)).astype(np.float32),
        "labels": rng.integers(0, V, lead).astype(np.int32),
        "where": rng.random(lead) < 0.7,
    }


def _close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6), a, b)


@pytest.mark.parametrize(
    ("name", "chunk_size"), [(name, 4) for name in LOGIT_LOSSES] + [("forward_kl", 1), ("forward_kl", 64)]
)
def test_chunked_logit_losses_match_unchunked_with_grads(name, chunk_size):
    fn, d = LOGIT_LOSSES[name], _data()
    s, t = d["hs"] @ d["ws"], d["ht"] @ d["wt"]
    chunked_fn = ch.chunked_loss(fn, chunk_size=chunk_size)

    @jax.jit
    def both(s, t, where):
        plain = jax.value_and_grad(lambda s: jnp.sum(fn(s, t, where=where) ** 2))(s)
        chunk = jax.value_and_grad(lambda s: jnp.sum(chunked_fn(s, t, where=where) ** 2))(s)
        return plain, chunk, fn(s, t, where=where), chunked_fn(s, t, where=where)

    plain, chunk, out, chunk_out = both(s, t, d["where"])
    _close(plain, chunk)
    _close(out, chunk_out)


def test_chunked_token_and_hidden_losses():
    d = _data()
    s = d["hs"] @ d["ws"]

    def check(fn, first, *rest):
        plain = jax.jit(jax.value_and_grad(lambda x, *r: jnp.sum(fn(x, *r, where=d["where"]) ** 2)))
        chunk = jax.jit(
            jax.value_and_grad(lambda x, *r: jnp.sum(ch.chunked_loss(fn, chunk_size=3)(x, *r, where=d["where"]) ** 2))
        )
        _close(plain(first, *rest), chunk(first, *rest))

    check(lm.token_cross_entropy, s, d["labels"])
    check(hidden.cosine_distance, d["hs"], d["hs"][::-1])


def test_chunked_leading_shapes_and_eager():
    d = _data(lead=(2, 3, 5))
    s, t = d["hs"] @ d["ws"], d["ht"] @ d["wt"]
    kl = ch.chunked_loss(distill.forward_kl, chunk_size=2)
    _close(kl(s, t, where=d["where"]), distill.forward_kl(s, t, where=d["where"]))  # eager
    jit_kl = jax.jit(kl)
    _close(jit_kl(s[0, 0], t[0, 0]), distill.forward_kl(s[0, 0], t[0, 0]))  # lead (T,)
    _close(jit_kl(s[0, 0, 0], t[0, 0, 0]), distill.forward_kl(s[0, 0, 0], t[0, 0, 0]))  # lead ()
    _close(jit_kl(s, t, where=d["where"][0, 0]), distill.forward_kl(s, t, where=d["where"][0, 0]))  # broadcast mask


def _unchunked_ce(hs, ws, labels, where):
    return lm.token_cross_entropy(hs @ ws, labels, where=where)


@pytest.mark.parametrize("vocab_chunk_size", [None, 5])
def test_cross_entropy_logprobs_lse_from_hidden(vocab_chunk_size):
    d = _data()
    kw = dict(chunk_size=4, vocab_chunk_size=vocab_chunk_size)

    @jax.jit
    def all_losses(hs, ws, labels, where):
        def grads(fn):
            return jax.value_and_grad(lambda hs, ws: jnp.sum(fn(hs, ws) ** 2), argnums=(0, 1))(hs, ws)

        return [
            (
                grads(lambda h, w: _unchunked_ce(h, w, labels, where)),
                grads(lambda h, w: ch.chunked_cross_entropy_from_hidden(h, w, labels, where=where, **kw)),
            ),
            (
                grads(lambda h, w: lm.token_logprobs(h @ w, labels, where=where)),
                grads(lambda h, w: ch.chunked_token_logprobs_from_hidden(h, w, labels, where=where, **kw)),
            ),
            (
                grads(lambda h, w: jax.nn.logsumexp(h @ w, axis=-1) * where),
                grads(lambda h, w: ch.chunked_logsumexp_from_hidden(h, w, where=where, **kw)),
            ),
        ]

    for plain, chunk in all_losses(d["hs"], d["ws"], d["labels"], d["where"]):
        _close(plain, chunk)


@pytest.mark.parametrize("name", ["forward_kl", "tempered_kl"])
def test_distill_from_hidden_matches_with_grads(name):
    fn, d = LOGIT_LOSSES[name], _data()

    @jax.jit
    def both(hs, ws, ht, wt, where):
        def grads(loss):
            return jax.value_and_grad(lambda *a: jnp.sum(loss(*a) ** 2), argnums=(0, 1, 2, 3))(hs, ws, ht, wt)

        plain = grads(lambda hs, ws, ht, wt: fn(hs @ ws, ht @ wt, where=where))
        chunk = grads(
            lambda hs, ws, ht, wt: ch.chunked_distill_from_hidden(
                hs, ws, ht, wt, divergence=fn, where=where, chunk_size=3
            )
        )
        return plain, chunk

    plain, chunk = both(d["hs"], d["ws"], d["ht"], d["wt"], d["where"])
    _close(plain, chunk)
    assert all(np.all(np.asarray(g) == 0) for g in chunk[1][2:])  # the teacher gets no gradient


def test_chunked_from_hidden_with_cached_top_k():
    d = _data()
    ids, logprobs = distill.teacher_top_k(d["ht"] @ d["wt"], k=5)
    loss = distill.top_k_distill_from_cache

    @jax.jit
    def both(hs, ws, ids, logprobs, where):
        plain = jax.value_and_grad(lambda hs, ws: loss(hs @ ws, ids, logprobs, where=where).sum(), (0, 1))(hs, ws)
        chunk = jax.value_and_grad(
            lambda hs, ws: ch.chunked_from_hidden(hs, ws, ids, logprobs, loss_fn=loss, where=where, chunk_size=4).sum(),
            (0, 1),
        )(hs, ws)
        return plain, chunk

    _close(*both(d["hs"], d["ws"], ids, logprobs, d["where"]))


def test_all_masked_finite_zero_grads_with_garbage_padding():
    d = _data()
    nothing = np.zeros((B, T), bool)
    hs, logits = np.full_like(d["hs"], np.nan), np.full((B, T, V), np.inf, np.float32)
    labels = np.full((B, T), -100, np.int32)

    def total(hs, ws, logits):
        return (
            ch.chunked_cross_entropy_from_hidden(hs, ws, labels, where=nothing, chunk_size=4, vocab_chunk_size=5).sum()
            + ch.chunked_distill_from_hidden(hs, ws, hs, d["wt"][:D], where=nothing, chunk_size=4).sum()
            + ch.chunked_from_hidden(hs, ws, labels, loss_fn=lm.token_cross_entropy, where=nothing, chunk_size=4).sum()
            + ch.chunked_loss(distill.reverse_kl, chunk_size=4)(logits, -logits, where=nothing).sum()
        )

    value, grads = jax.jit(jax.value_and_grad(total, (0, 1, 2)))(hs, d["ws"], logits)
    assert value == 0
    assert all(np.all(np.asarray(g) == 0) for g in grads)


def test_masked_vocab_finite_grads_from_hidden():
    d = _data()
    banned = np.arange(V) >= V - 4
    ws = np.where(banned, 0.0, d["ws"])
    bias = np.where(banned, -np.inf, 0.0).astype(np.float32)

    def total(hs):
        lse = ch.chunked_logsumexp_from_hidden(hs, ws, chunk_size=4, vocab_chunk_size=3)
        kl = ch.chunked_loss(distill.generalized_jsd, chunk_size=4)(hs @ ws + bias, d["ht"] @ d["wt"] + bias)
        return lse.sum() + kl.sum()

    value, grad = jax.jit(jax.value_and_grad(total))(d["hs"])
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_bad_input_raises():
    d = _data()
    s = d["hs"] @ d["ws"]
    with pytest.raises(ValueError, match="chunk_size"):
        ch.chunked_loss(distill.forward_kl, chunk_size=0)
    with pytest.raises(ValueError, match="token argument 1"):
        ch.chunked_loss(lm.token_cross_entropy, chunk_size=2)(s, d["labels"][:, :3])
    with pytest.raises(ValueError, match="kernel_DxV"):
        ch.chunked_cross_entropy_from_hidden(d["hs"], d["wt"], d["labels"], chunk_size=2)
    with pytest.raises(ValueError, match="vocab_chunk_size"):
        ch.chunked_logsumexp_from_hidden(d["hs"], d["ws"], chunk_size=2, vocab_chunk_size=0)
    with pytest.raises(ValueError, match="vocabulary"):
        ch.chunked_distill_from_hidden(d["hs"], d["ws"], d["ht"], d["wt"][:, :5], chunk_size=2)


def test_memory_is_bounded_by_one_chunk():
    """Compiled temp memory of value-and-grad: a few chunks for chunked, several full logits unchunked."""
    batch, length, width, vocab, chunk = 2, 256, 16, 2048, 16
    rng = np.random.default_rng(0)
    hs, ht = (jnp.asarray(rng.standard_normal((batch, length, width)), jnp.float32) for _ in range(2))
    ws, wt = (jnp.asarray(rng.standard_normal((width, vocab)), jnp.float32) for _ in range(2))
    labels = jnp.asarray(rng.integers(0, vocab, (batch, length)), jnp.int32)

    def temp_bytes(loss, *args):
        return jax.jit(jax.grad(loss, (0, 1))).lower(*args).compile().memory_analysis().temp_size_in_bytes

    full_logits, chunk_logits = batch * length * vocab * 4, batch * chunk * vocab * 4
    kl = temp_bytes(lambda hs, ws, ht, wt: distill.forward_kl(hs @ ws, ht @ wt).sum(), hs, ws, ht, wt)
    kl_chunked = temp_bytes(
        lambda hs, ws, ht, wt: ch.chunked_distill_from_hidden(hs, ws, ht, wt, chunk_size=chunk).sum(), hs, ws, ht, wt
    )
    assert kl >= 2 * full_logits
    assert kl_chunked <= 6 * chunk_logits
    ce_vocab_chunked = temp_bytes(
        lambda hs, ws, y: ch.chunked_cross_entropy_from_hidden(hs, ws, y, chunk_size=chunk, vocab_chunk_size=256).sum(),
        hs,
        ws,
        labels,
    )
    assert ce_vocab_chunked <= 2 * chunk_logits


def test_sharded_equals_unsharded():
    """Batch sharded over 4 devices and the vocabulary over 2: logsumexp reduces across vocabulary shards."""
    d = _data(lead=(4, T))
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    spec = jax.sharding.PartitionSpec
    put = lambda x, *axes: jax.device_put(x, jax.sharding.NamedSharding(mesh, spec(*axes)))  # noqa: E731
    ws = np.concatenate([d["ws"], d["ws"][:, :3]], axis=1)  # V = 16 divides over 2 shards
    wt = np.concatenate([d["wt"], d["wt"][:, :3]], axis=1)

    @jax.jit
    def loss(hs, ws, ht, wt, labels, where):
        kd = ch.chunked_distill_from_hidden(hs, ws, ht, wt, where=where, chunk_size=4)
        ce = ch.chunked_cross_entropy_from_hidden(hs, ws, labels, where=where, chunk_size=4, vocab_chunk_size=4)
        return jax.value_and_grad(lambda hs: jnp.sum(kd * ce + ce))(hs)

    args = (d["hs"], ws, d["ht"], wt, d["labels"], d["where"])
    sharded = (
        put(d["hs"], "data"),
        put(ws, None, "model"),
        put(d["ht"], "data"),
        put(wt, None, "model"),
        put(d["labels"], "data"),
        put(d["where"], "data"),
    )
    _close(loss(*args), loss(*sharded))
