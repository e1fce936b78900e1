"""Tiny teacher/student pairs and packed batches shared by the distillation tests."""

import grain
import jax
import numpy as np
import pytest

from lnemo.data import ByteTokenizer, ProblemSource, synthetic_pipeline
from lnemo.models import AttentionConfig, BlockConfig, FFNConfig, ModelConfig, init


@pytest.fixture(scope="session")
def teacher():
    config = ModelConfig.tiny(num_layers=3)
    return config, init(config, jax.random.key(0))


@pytest.fixture(scope="session")
def student(teacher):
    config = teacher[0].with_block(1, BlockConfig(AttentionConfig.none(), FFNConfig.swiglu(64)))
    return config, init(config, jax.random.key(1))


def batches(n, *, seed=0, batch_size=4, seq_len=32):
    pipeline = synthetic_pipeline(ByteTokenizer(), seq_len=seq_len, batch_size=batch_size,
                                  source=ProblemSource(seed=seed), shard=grain.sharding.NoSharding())
    it = iter(pipeline)
    return [{k: np.asarray(v) for k, v in next(it).items()} for _ in range(n)]


@pytest.fixture(scope="session")
def batch():
    return batches(1)[0]
