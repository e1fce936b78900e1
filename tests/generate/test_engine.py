import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lnemo.generate import Categorical, GenerateOutput, Greedy, Temperature, TopK, generate, left_align
from lnemo.losses import token_logprobs
from lnemo.models import AttentionConfig, BlockConfig, FFNConfig, ModelConfig, forward, init
from lnemo.sharding import make_mesh
from lnemo.testing import count_compiles

N = 8


@pytest.fixture(scope="module")
def model():
    """Heterogeneous: GQA with 2 and 1 KV heads, a linear-attention layer, a layer without attention."""
    cfg = ModelConfig(vocab_size=272, hidden_size=32, num_heads=4, rope_theta=10000.0, blocks=(
        BlockConfig.llama(2, 64),
        BlockConfig(AttentionConfig.linear(), FFNConfig.swiglu(48)),
        BlockConfig(AttentionConfig.none(), FFNConfig.linear()),
        BlockConfig.llama(1, 64)))
    return cfg, jax.jit(init, static_argnums=0)(cfg, jax.random.key(0))


@pytest.fixture(scope="module")
def prompts():
    tokens = jax.random.randint(jax.random.key(1), (2, 6), 0, 256)
    where = jnp.array([[True] * 6, [True] * 3 + [False] * 3])  # row 1 right-padded
    return tokens, where


def full_logits(cfg, params, seq):
    """Logits of a whole sequence without a cache, in a fixed 16-token buffer (one compilation)."""
    buf = jnp.zeros((1, 16), jnp.int32).at[0, :len(seq)].set(jnp.asarray(seq))
    return _forward(cfg, params, buf)[0, :len(seq)]


_forward = jax.jit(lambda cfg, params, tokens: forward(cfg, params, tokens).logits, static_argnums=0)


def recompute_greedy(cfg, params, prompt, n):
    seq = list(np.asarray(prompt))
    for _ in range(n):
        seq.append(int(jnp.argmax(full_logits(cfg, params, seq)[-1])))
    return seq[len(prompt):]


SAMPLING = dict(sampler=Categorical(Temperature(0.5)), num_samples=2, max_new_tokens=N)


def test_left_align():
    tokens, where = left_align(jnp.array([[5, 6, 0, 0], [0, 7, 0, 8]]),
                               where=jnp.array([[1, 1, 0, 0], [0, 1, 0, 1]], bool))
    np.testing.assert_array_equal(tokens, [[0, 0, 5, 6], [0, 0, 7, 8]])
    np.testing.assert_array_equal(where, [[0, 0, 1, 1], [0, 0, 1, 1]])


def test_greedy_with_cache_equals_recomputation_and_each_prompt_alone(model, prompts):
    cfg, params = model
    tokens, where = prompts
    out = generate(cfg, params, tokens, jax.random.key(0), where=where, max_new_tokens=N, pad_id=-1)
    assert isinstance(out, GenerateOutput) and out.tokens.shape == (2, N)
    np.testing.assert_array_equal(out.lengths, [N, N])
    assert not out.stopped.any()
    for r in range(2):
        prompt = tokens[r][where[r]]
        np.testing.assert_array_equal(out.tokens[r], recompute_greedy(cfg, params, prompt, N))
        alone = generate(cfg, params, prompt[None], jax.random.key(5), max_new_tokens=N, pad_id=-1)
        np.testing.assert_array_equal(alone.tokens[0], out.tokens[r])
        np.testing.assert_allclose(alone.logprobs[0], out.logprobs[r], atol=1e-5)


def test_logprobs_are_raw_model_and_sampler_logprobs_follow_the_sampler(model, prompts):
    cfg, params = model
    tokens, where = prompts
    out = generate(cfg, params, tokens, jax.random.key(3), where=where, **SAMPLING)
    assert out.tokens.shape == (4, N)
    for r in range(4):
        prompt = tokens[r // 2][where[r // 2]]
        logits = full_logits(cfg, params, jnp.concatenate([prompt, out.tokens[r]]))[len(prompt) - 1:-1]
        np.testing.assert_allclose(out.logprobs[r], token_logprobs(logits, out.tokens[r]), atol=2e-5)
        np.testing.assert_allclose(out.sampler_logprobs[r], token_logprobs(logits / 0.5, out.tokens[r]), atol=2e-5)


def test_samples_are_deterministic_for_a_key_and_differ_across_samples(model, prompts):
    cfg, params = model
    tokens, where = prompts
    kw = dict(where=where, **SAMPLING)
    a = generate(cfg, params, tokens, jax.random.key(7), **kw)
    b = generate(cfg, params, tokens, jax.random.key(7), **kw)
    c = generate(cfg, params, tokens, jax.random.key(8), **kw)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)
    assert not np.array_equal(a.tokens[0], a.tokens[1])  # two samples of the same prompt


def test_stop_on_eos_and_on_stop_sequences(model, prompts):
    cfg, params = model
    tokens, where = prompts
    full = generate(cfg, params, tokens, jax.random.key(0), where=where, max_new_tokens=N, pad_id=-1).tokens
    eos = int(full[0, 2])
    first = int(np.argmax(np.asarray(full[1]) == eos)) if eos in np.asarray(full[1]) else N
    out = generate(cfg, params, tokens, jax.random.key(0), where=where, max_new_tokens=N, eos_ids=(eos,), pad_id=-1)
    n0 = int(np.argmax(np.asarray(full[0]) == eos)) + 1
    assert int(out.lengths[0]) == n0 and bool(out.stopped[0])
    np.testing.assert_array_equal(out.tokens[0, :n0], full[0, :n0])
    assert (out.tokens[0, n0:] == -1).all() and (out.logprobs[0, n0:] == 0).all()
    assert int(out.lengths[1]) == min(first + 1, N)
    stop = (int(full[1, 3]), int(full[1, 4]))
    out = generate(cfg, params, tokens, jax.random.key(0), where=where, max_new_tokens=N, stop_sequences=[stop],
                   pad_id=-1)
    hits = [i + 2 for i in range(N - 1) if (int(full[1, i]), int(full[1, i + 1])) == stop]
    assert int(out.lengths[1]) == hits[0] and bool(out.stopped[1])


def test_one_compilation_per_shape(model, prompts):
    cfg, params = model
    tokens, where = prompts
    kw = dict(where=where, max_new_tokens=N, num_samples=2)
    generate(cfg, params, tokens, jax.random.key(0), sampler=Categorical(TopK(5)), **kw)
    with count_compiles() as compiles:
        for seed in range(3):  # a new but equal sampler object and a new key: no recompilation
            generate(cfg, params, tokens, jax.random.key(seed), sampler=Categorical(TopK(5)), **kw)
    assert compiles.count == 0
    with count_compiles() as compiles:
        generate(cfg, params, tokens, jax.random.key(0), sampler=Categorical(TopK(6)), **kw)
    assert compiles.count >= 1


def test_sharded_over_the_batch_equals_unsharded(model):
    cfg, params = model
    tokens = jax.random.randint(jax.random.key(4), (4, 5), 0, 256)
    kw = dict(max_new_tokens=4, sampler=Categorical(Temperature(1.5)), num_samples=2)
    mesh = make_mesh({"data": -1})
    sharded = generate(cfg, params, tokens, jax.random.key(2), mesh=mesh, **kw)
    plain = generate(cfg, params, tokens, jax.random.key(2), **kw)
    np.testing.assert_array_equal(sharded.tokens, plain.tokens)
    np.testing.assert_allclose(sharded.logprobs, plain.logprobs, atol=1e-5)
    assert sharded.tokens.sharding.spec[0] is not None


def test_bad_inputs_raise(model, prompts):
    cfg, params = model
    tokens, where = prompts
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(cfg, params, tokens, jax.random.key(0), max_new_tokens=0)
    with pytest.raises(ValueError, match="where shape"):
        generate(cfg, params, tokens, jax.random.key(0), where=where[:, :3], max_new_tokens=2)
    with pytest.raises(ValueError, match="prompts"):
        generate(cfg, params, tokens[0], jax.random.key(0), max_new_tokens=2)
    with pytest.raises(ValueError, match=r"no prompt token in rows \[1\]"):
        generate(cfg, params, tokens, jax.random.key(0), where=where.at[1].set(False), max_new_tokens=2)
    with pytest.raises(ValueError, match="stop_sequences"):
        generate(cfg, params, tokens, jax.random.key(0), max_new_tokens=2, stop_sequences=[()])
