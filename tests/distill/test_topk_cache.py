import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lnemo.distill import TopKCache, offline_kd_objective, write_teacher_top_k
from lnemo.losses import teacher_top_k
from lnemo.models import forward
from tests.distill.conftest import batches


def test_cache_round_trip_matches_the_teacher(tmp_path, teacher):
    config, params = teacher
    data = batches(3)
    write_teacher_top_k(config, params, data, tmp_path / "c", k=5, batches_per_shard=2, chunk_size=8)
    cache = TopKCache(tmp_path / "c")
    assert len(cache) == 3 and cache.k == 5
    assert sorted(p.name for p in (tmp_path / "c").glob("*.safetensors")) == ["shard_00000.safetensors",
                                                                              "shard_00001.safetensors"]
    for i in (2, 0, 1):  # any order, across shards
        got = cache[i]
        for key, value in data[i].items():
            np.testing.assert_array_equal(got[key], value)
        logits = forward(config, params, data[i]["tokens"], positions=data[i]["positions"],
                         segment_ids=data[i]["segment_ids"]).logits
        ids, logprobs = teacher_top_k(logits, k=5)
        np.testing.assert_array_equal(got["teacher_ids"], ids)
        np.testing.assert_allclose(got["teacher_logprobs"], logprobs, atol=1e-5)
    assert [b["tokens"][0, 0] for b in cache.batches(num_epochs=2)] == [d["tokens"][0, 0] for d in data] * 2


def test_offline_distillation_from_the_cache_lowers_the_top_k_loss(tmp_path, teacher, student):
    t_cfg, t_params = teacher
    s_cfg, s_params = student
    write_teacher_top_k(t_cfg, t_params, batches(2), tmp_path, k=8, logprob_dtype="float16")
    cache = TopKCache(tmp_path)
    assert cache[0]["teacher_logprobs"].dtype == np.float32
    loss_fn = offline_kd_objective(s_cfg, tail=True)
    grad = jax.jit(jax.value_and_grad(lambda p, b: loss_fn(p, b, None)[0]))
    first = None
    for _ in range(15):
        for batch in cache.batches():
            loss, g = grad(s_params, batch)
            first = float(loss) if first is None else first
            s_params = jax.tree.map(lambda p, d: p - 1e-2 * d / 100.0, s_params, g)
    assert float(grad(s_params, cache[0])[0]) < 0.8 * first
    assert bool(jnp.isfinite(loss))


def test_cache_errors_are_named(tmp_path, teacher):
    config, params = teacher
    with pytest.raises(FileNotFoundError, match="index.json"):
        TopKCache(tmp_path)
    with pytest.raises(ValueError, match="logprob_dtype"):
        write_teacher_top_k(config, params, batches(1), tmp_path, k=2, logprob_dtype="int8")
    with pytest.raises(ValueError, match="empty"):
        write_teacher_top_k(config, params, [], tmp_path, k=2)
    write_teacher_top_k(config, params, batches(1), tmp_path, k=2)
    with pytest.raises(FileExistsError, match="already holds"):
        write_teacher_top_k(config, params, batches(1), tmp_path, k=2)
    with pytest.raises(IndexError, match="outside"):
        TopKCache(tmp_path)[1]
