"""A few training steps of the tiny lnemo model on 4 CPU devices split over 1 or 2 processes.

Used by test_multiprocess.py. Usage: python multiprocess_train_run.py NUM_PROCESSES PROCESS_ID PORT
Each process owns 4 / NUM_PROCESSES devices; together they form one (data=2, fsdp=2) mesh. The data is
two fixed shards of the synthetic corpus (``ShardOptions(i, 2)``); process ``p`` reads only its own shards
and feeds their rows through ``global_batch``, so every run trains on the same global batches: shard 0's
rows, then shard 1's. Prints one line ``RESULT {json}`` with the per-step metrics.
"""

import json
import sys

import grain
import jax
import jax.numpy as jnp
import numpy as np

from lnemo.data import ByteTokenizer, ProblemSource, synthetic_pipeline
from lnemo.models import ModelConfig
from lnemo.sharding import make_mesh
from lnemo.train import adamw, global_batch, warmup_cosine
from lnemo.train.model_setup import setup_model_training
from lnemo.train.objectives import lm_objective

NUM_DEVICES, NUM_SHARDS, SHARD_ROWS, STEPS = 4, 2, 4, 3


def main(num_processes: int, process_id: int, port: int) -> None:
    # Importing lnemo starts no backend, so the device count and the distributed client can still be set.
    jax.config.update("jax_num_cpu_devices", NUM_DEVICES // num_processes)
    if num_processes > 1:
        jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=num_processes, process_id=process_id)

    assert jax.process_count() == num_processes and jax.device_count() == NUM_DEVICES
    config = ModelConfig.tiny()
    loss_fn = lm_objective(config)
    optimizer = adamw(warmup_cosine(1e-2, warmup_steps=1, total_steps=STEPS))
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 1})
    run = setup_model_training(config, loss_fn, optimizer, mesh, jax.random.key(0))

    per_process = NUM_SHARDS // num_processes
    own = range(process_id * per_process, (process_id + 1) * per_process)
    shards = [
        iter(synthetic_pipeline(ByteTokenizer(), seq_len=32, batch_size=SHARD_ROWS, source=ProblemSource(seed=3),
                                shard=grain.sharding.ShardOptions(i, NUM_SHARDS)))
        for i in own
    ]  # fmt: skip
    square_sum = jax.jit(lambda params: sum(jnp.sum(x**2) for x in jax.tree.leaves(params)))
    state, metrics = run.state, []
    for _ in range(STEPS):
        rows = [next(shard) for shard in shards]
        local = {key: np.concatenate([r[key] for r in rows]) for key in rows[0]}
        state, step_metrics = run.step(state, global_batch(local, run.batch_sharding))
        metrics.append({k: float(v) for k, v in jax.device_get(step_metrics).items()})
    result = {
        "process": jax.process_index(),
        "local_devices": jax.local_device_count(),
        "loss": [m["loss"] for m in metrics],
        "grad_norm": [m["grad_norm"] for m in metrics],
        "tokens": [m["tokens"] for m in metrics],
        "param_square_sum": float(square_sum(state.params)),
        "first_tokens": local["tokens"][:, 1].tolist(),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
