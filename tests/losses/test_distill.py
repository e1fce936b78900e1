"""Tests for lnemo.losses.distill: divergences, temperature, top-k distillation."""

import functools
import math

import hypothesis.extra.numpy as hnp
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lnemo.losses import distill

V = 7


# ---------- float64 numpy references ----------
def _np_logsoftmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_kl(logp, logq):
    p = np.exp(logp)
    with np.errstate(invalid="ignore"):
        return np.where(p > 0, p * (logp - logq), 0.0).sum(-1)


def _np_mix(logp, logq, w):
    with np.errstate(divide="ignore"):
        return np.log(w * np.exp(logp) + (1 - w) * np.exp(logq))


def _np_jsd(logq, logp, beta):
    logm = _np_mix(logp, logq, beta)
    return beta * _np_kl(logp, logm) + (1 - beta) * _np_kl(logq, logm)


REFERENCES = {
    "forward_kl": (distill.forward_kl, lambda q, p: _np_kl(p, q)),
    "reverse_kl": (distill.reverse_kl, lambda q, p: _np_kl(q, p)),
    "jsd_0.3": (functools.partial(distill.generalized_jsd, beta=0.3), lambda q, p: _np_jsd(q, p, 0.3)),
    "jsd_0.5": (distill.generalized_jsd, lambda q, p: _np_jsd(q, p, 0.5)),
    "skew_kl": (distill.skew_kl, lambda q, p: _np_kl(p, _np_mix(p, q, 0.1))),
    "skew_reverse_kl": (distill.skew_reverse_kl, lambda q, p: _np_kl(q, _np_mix(q, p, 0.1))),
    "total_variation": (distill.total_variation, lambda q, p: 0.5 * np.abs(np.exp(p) - np.exp(q)).sum(-1)),
    "top_k_all": (functools.partial(distill.top_k_distill, k=V), lambda q, p: _np_kl(p, q)),
}
NAMES = list(REFERENCES)
JITTED = {name: jax.jit(fn, static_argnames="axis") for name, (fn, _) in REFERENCES.items()}


def _data(seed=0, shape=(3, 4), scale=3.0):
    rng = np.random.default_rng(seed)
    student = (scale * rng.standard_normal((*shape, V))).astype(np.float32)
    teacher = (scale * rng.standard_normal((*shape, V))).astype(np.float32)
    where = rng.random(shape) < 0.6
    return student, teacher, where


def _log(probs):
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(probs, np.float32))


# ---------- hand-computed values ----------
def test_hand_values():
    q, p = _log([0.25, 0.75]), _log([0.5, 0.5])
    kl_pq = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    kl_qp = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    np.testing.assert_allclose(distill.forward_kl(q, p), kl_pq, rtol=1e-6)
    np.testing.assert_allclose(distill.reverse_kl(q, p), kl_qp, rtol=1e-6)
    np.testing.assert_allclose(distill.total_variation(q, p), 0.25, rtol=1e-6)
    m = [0.375, 0.625]
    js = 0.5 * (0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])) + 0.5 * (
        0.25 * math.log(0.25 / m[0]) + 0.75 * math.log(0.75 / m[1])
    )
    np.testing.assert_allclose(distill.generalized_jsd(q, p), js, rtol=1e-5)
    # disjoint supports: JS = log 2, TV = 1, skew KL = -log(alpha)
    a, b = _log([1.0, 0.0]), _log([0.0, 1.0])
    np.testing.assert_allclose(distill.generalized_jsd(a, b), math.log(2), rtol=1e-6)
    np.testing.assert_allclose(distill.total_variation(a, b), 1.0, rtol=1e-6)
    np.testing.assert_allclose(distill.skew_kl(a, b, alpha=0.1), -math.log(0.1), rtol=1e-6)
    np.testing.assert_allclose(distill.skew_reverse_kl(a, b, alpha=0.25), -math.log(0.25), rtol=1e-6)


def test_endpoint_conventions():
    s, t, w = _data()
    fwd, rev = distill.forward_kl(s, t, where=w), distill.reverse_kl(s, t, where=w)
    np.testing.assert_array_equal(distill.generalized_jsd(s, t, beta=0.0, where=w), fwd)
    np.testing.assert_array_equal(distill.generalized_jsd(s, t, beta=1.0, where=w), rev)
    np.testing.assert_allclose(distill.skew_kl(s, t, alpha=0.0, where=w), fwd, rtol=1e-6)
    np.testing.assert_allclose(distill.skew_reverse_kl(s, t, alpha=0.0, where=w), rev, rtol=1e-6)
    np.testing.assert_array_equal(distill.skew_kl(s, t, alpha=1.0, where=w), 0.0)
    # the formula tends to 0 as beta -> 0: the endpoint is a convention, not a limit
    assert float(distill.generalized_jsd(s, t, beta=1e-6).max()) < 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_float64_reference(name):
    s, t, _ = _data(scale=10.0)
    expected = REFERENCES[name][1](_np_logsoftmax(s), _np_logsoftmax(t))
    np.testing.assert_allclose(JITTED[name](s, t), expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("name", NAMES)
def test_jit_equals_eager(name):
    s, t, w = _data()
    eager = REFERENCES[name][0](s, t, where=w)
    np.testing.assert_allclose(JITTED[name](s, t, where=w), eager, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_masked_equals_sliced_and_batch_dims(name):
    s, t, w = _data(shape=(2, 3, 4))
    fn = JITTED[name]
    full = np.asarray(fn(s, t, where=w))
    np.testing.assert_allclose(full[w], fn(s[w], t[w]), rtol=1e-5, atol=1e-7)
    assert np.all(full[~w] == 0)
    flat = fn(s.reshape(-1, V), t.reshape(-1, V))
    np.testing.assert_allclose(fn(s, t), np.reshape(flat, (2, 3, 4)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fn(np.moveaxis(s, -1, 0), np.moveaxis(t, -1, 0), axis=0), fn(s, t), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_all_masked_finite_zero_grads_and_teacher_gets_none(name):
    fn = REFERENCES[name][0]
    s, t, w = _data()
    s_bad = np.full_like(s, np.nan)
    value, grad = jax.jit(jax.value_and_grad(lambda s, t: fn(s, t, where=np.zeros_like(w)).sum()))(s_bad, t)
    assert value == 0 and np.all(np.asarray(grad) == 0)
    teacher_grad = jax.jit(jax.grad(lambda t: fn(s, t, where=w).sum()))(t)
    assert np.all(np.asarray(teacher_grad) == 0)


@pytest.mark.parametrize("name", NAMES)
def test_nonnegative_and_zero_iff_equal(name):
    fn = JITTED[name]
    s, t, _ = _data(seed=1)
    assert np.all(np.asarray(fn(s, t)) > 0)
    np.testing.assert_allclose(fn(s, s), 0.0, atol=2e-6)
    np.testing.assert_allclose(fn(s, s + 5.0), 0.0, atol=2e-6)  # logits are shift invariant


def test_bounds_and_symmetry():
    s, t, _ = _data(seed=2, scale=8.0)
    js = distill.generalized_jsd(s, t, beta=0.5)
    np.testing.assert_allclose(js, distill.generalized_jsd(t, s, beta=0.5), rtol=1e-5)
    assert np.all(np.asarray(js) <= math.log(2) + 1e-6)
    np.testing.assert_allclose(
        distill.generalized_jsd(s, t, beta=0.3), distill.generalized_jsd(t, s, beta=0.7), rtol=1e-5, atol=1e-7
    )
    assert np.all(np.asarray(distill.total_variation(s, t)) <= 1.0)
    assert np.all(np.asarray(distill.skew_kl(s, t, alpha=0.2)) <= -math.log(0.2) + 1e-5)


def test_forward_kl_gradient_is_q_minus_p():
    s, t, _ = _data()
    grad = jax.grad(lambda s: distill.forward_kl(s, t).sum())(s)
    np.testing.assert_allclose(grad, jax.nn.softmax(s) - jax.nn.softmax(t), atol=1e-6)


def test_with_temperature():
    s, t, w = _data()
    scaled = distill.with_temperature(distill.forward_kl, 2.0)(s, t, where=w)
    np.testing.assert_allclose(scaled, 4.0 * distill.forward_kl(s / 2.0, t / 2.0, where=w), rtol=1e-6)
    plain = distill.with_temperature(distill.reverse_kl, 0.5, rescale=False)(s, t, where=w)
    np.testing.assert_allclose(plain, distill.reverse_kl(s * 2.0, t * 2.0, where=w), rtol=1e-6)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            distill.with_temperature(distill.forward_kl, bad)


def test_bad_options_raise():
    s, t, _ = _data()
    with pytest.raises(ValueError, match="beta"):
        distill.generalized_jsd(s, t, beta=1.5)
    with pytest.raises(ValueError, match="alpha"):
        distill.skew_kl(s, t, alpha=-0.1)
    with pytest.raises(ValueError, match="k must"):
        distill.teacher_top_k(t, k=V + 1)
    with pytest.raises(ValueError, match="tail=True needs k < V"):
        distill.top_k_distill(s, t, k=V, tail=True)
    ids, logprobs = distill.teacher_top_k(t, k=3)
    with pytest.raises(ValueError, match="teacher_ids_xK shape"):
        distill.top_k_distill_from_cache(s, ids[..., :2], logprobs)
    with pytest.raises(ValueError, match="leading shape"):
        distill.top_k_distill_from_cache(s[:1], ids, logprobs)


# ---------- top-k ----------
def test_teacher_top_k_and_hand_value():
    t = _log([[0.1, 0.4, 0.2, 0.3]])
    ids, logprobs = distill.teacher_top_k(t, k=2)
    np.testing.assert_array_equal(ids, [[1, 3]])
    np.testing.assert_allclose(logprobs, _log([[0.4, 0.3]]), rtol=1e-6)
    s = _log([[0.25, 0.25, 0.25, 0.25]])
    # restricted and renormalised: p~ = (4/7, 3/7), q~ = (1/2, 1/2)
    expected = 4 / 7 * math.log(8 / 7) + 3 / 7 * math.log(6 / 7)
    np.testing.assert_allclose(distill.top_k_distill(s, t, k=2), [expected], rtol=1e-5)
    # with the tail bin: p = (0.4, 0.3, 0.3), q = (0.25, 0.25, 0.5)
    expected_tail = 0.4 * math.log(0.4 / 0.25) + 0.3 * math.log(0.3 / 0.25) + 0.3 * math.log(0.3 / 0.5)
    np.testing.assert_allclose(distill.top_k_distill(s, t, k=2, tail=True), [expected_tail], rtol=1e-5)
    np.testing.assert_allclose(
        distill.top_k_distill_from_cache(s, ids, logprobs, tail=True), [expected_tail], rtol=1e-5
    )


def test_top_k_float64_reference_with_tail_and_divergence():
    s, t, w = _data(scale=5.0)
    k = 3
    logp, logq = _np_logsoftmax(t), _np_logsoftmax(s)
    ids = np.argsort(-t, axis=-1)[..., :k]
    p_k, q_k = np.take_along_axis(np.exp(logp), ids, -1), np.take_along_axis(np.exp(logq), ids, -1)
    p_bins = np.concatenate([p_k, 1 - p_k.sum(-1, keepdims=True)], -1)
    q_bins = np.concatenate([q_k, 1 - q_k.sum(-1, keepdims=True)], -1)
    expected = np.where(w, _np_kl(np.log(p_bins), np.log(q_bins)), 0)
    got = distill.top_k_distill(s, t, k=k, tail=True, where=w)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    renorm_p, renorm_q = p_k / p_k.sum(-1, keepdims=True), q_k / q_k.sum(-1, keepdims=True)
    expected_tv = 0.5 * np.abs(renorm_p - renorm_q).sum(-1)
    got_tv = distill.top_k_distill(s, t, k=k, divergence=distill.total_variation)
    np.testing.assert_allclose(got_tv, expected_tv, rtol=1e-4, atol=1e-6)
    with_temp = distill.with_temperature(functools.partial(distill.top_k_distill, k=k), 2.0)(s, t)
    np.testing.assert_allclose(with_temp, 4.0 * distill.top_k_distill(s / 2, t / 2, k=k), rtol=1e-5)


def test_top_k_gradient_flows_only_through_student_kept_ids_without_tail():
    s, t, _ = _data()
    ids, logprobs = distill.teacher_top_k(t, k=3)
    grad = np.asarray(jax.jit(jax.grad(lambda s: distill.top_k_distill_from_cache(s, ids, logprobs).sum()))(s))
    kept = np.zeros_like(grad, bool)
    np.put_along_axis(kept, np.asarray(ids), True, axis=-1)
    assert np.all(grad[~kept] == 0) and np.any(grad[kept] != 0)
    tail_loss = jax.jit(jax.grad(lambda s: distill.top_k_distill_from_cache(s, ids, logprobs, tail=True).sum()))
    tail_grad = np.asarray(tail_loss(s))
    assert np.all(np.isfinite(tail_grad)) and np.any(tail_grad[~kept] != 0)


# ---------- properties ----------
_logits = hnp.arrays(np.float32, (3, V), elements=st.floats(-1e4, 1e4, width=32))
_PROPERTY_FNS = [
    distill.forward_kl,
    distill.reverse_kl,
    distill.generalized_jsd,
    distill.skew_kl,
    distill.skew_reverse_kl,
    distill.total_variation,
    functools.partial(distill.top_k_distill, k=3, tail=True),
]


@jax.jit
def _all_values_and_grads(s, t, where):
    out = []
    for fn in _PROPERTY_FNS:
        value, grad = jax.value_and_grad(lambda s: fn(s, t, where=where).sum())(s)
        out.append((value, grad))
    return out


@settings(max_examples=30, deadline=None)
@given(s=_logits, t=_logits, banned=hnp.arrays(np.bool_, (V,)), where=hnp.arrays(np.bool_, (3,)))
def test_property_finite_on_extreme_logits_and_masked_vocab(s, t, banned, where):
    banned[0] = False  # keep one shared allowed token
    s, t = np.where(banned, -np.inf, s), np.where(banned, -np.inf, t)
    for value, grad in _all_values_and_grads(s, t, where):
        assert np.isfinite(value) and value >= -1e-3
        assert np.all(np.isfinite(grad))


@settings(max_examples=20, deadline=None)
@given(s=_logits, t=_logits, pad=hnp.arrays(np.float32, (2, V), elements=st.floats(-1e4, 1e4, width=32)))
def test_property_padding_invariance(s, t, pad):
    where = np.array([True] * 3 + [False] * 2)
    padded = _all_values_and_grads(np.concatenate([s, pad]), np.concatenate([t, pad[::-1]]), where)
    plain = _all_values_and_grads(s, t, np.ones(3, bool))
    for (value, grad), (value0, grad0) in zip(padded, plain, strict=True):
        np.testing.assert_allclose(value, value0, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(grad[:3], grad0, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(grad[3:], 0)


@settings(max_examples=25, deadline=None)
@given(
    s=hnp.arrays(np.float32, (3, V), elements=st.floats(-30, 30, width=32)),
    t=hnp.arrays(np.float32, (3, V), elements=st.floats(-30, 30, width=32)),
)
def test_property_matches_float64(s, t):
    got = _all_values_and_grads(s, t, np.ones(3, bool))
    logq, logp = _np_logsoftmax(s), _np_logsoftmax(t)
    for (value, _), name in zip(
        got[:6], NAMES[:2] + ["jsd_0.5", "skew_kl", "skew_reverse_kl", "total_variation"], strict=True
    ):
        expected = REFERENCES[name][1](logq, logp).sum()
        np.testing.assert_allclose(value, expected, rtol=1e-3, atol=1e-4)
