"""Training run used by test_resume.py: tiny model, 4 CPU devices, checkpoints, resumes if it can.

Usage: python resume_run.py RUN_DIR LOG_FILE NUM_STEPS [BLOCK_AT]
With BLOCK_AT, the data iterator prints BLOCKED and hangs when asked for batch BLOCK_AT, so the
parent can kill the process at a known point.
"""

import sys
import time

import jax

jax.config.update("jax_num_cpu_devices", 4)

import tiny_mlp_lm as lm  # noqa: E402

from lnemo.checkpoint import Checkpointer  # noqa: E402
from lnemo.sharding import batch_sharding, make_mesh, param_shardings  # noqa: E402
from lnemo.train import (  # noqa: E402
    JsonlWriter,
    abstract_train_state,
    adamw,
    create_train_state,
    fit,
    jit_train_step,
    make_train_step,
    train_state_shardings,
    warmup_cosine,
)


class BlockingData(lm.MarkovData):
    def __init__(self, block_at):
        super().__init__()
        self.block_at = block_at

    def __next__(self):
        if self.index == self.block_at:
            print("BLOCKED", flush=True)
            time.sleep(600)
        return super().__next__()


def token_dropout_loss(params, batch, rng):
    """Uses the step key, so an exact resume also needs the restored PRNG state."""
    keep = jax.random.bernoulli(rng, 0.8, batch["mask"].shape)
    return lm.loss_fn(params, {**batch, "mask": batch["mask"] & keep}, rng)


def main(run_dir, log_file, num_steps, block_at=None):
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 1})
    tx = adamw(warmup_cosine(3e-2, warmup_steps=3, total_steps=num_steps))
    abstract = jax.eval_shape(lm.init, jax.random.key(0))
    shardings = train_state_shardings(tx, abstract, param_shardings(abstract, lm.logical_axes(abstract), mesh))
    step = jit_train_step(make_train_step(token_dropout_loss, tx, accum_steps=2), shardings, batch_sharding(mesh))
    data = lm.MarkovData() if block_at is None else BlockingData(block_at)
    writer = JsonlWriter(log_file)
    with Checkpointer(run_dir, max_to_keep=2, config={"num_steps": num_steps}) as ckpt:
        if ckpt.latest_step() is None:
            state = create_train_state(lm.init, tx, jax.random.key(0), shardings=shardings)
        else:
            restored = ckpt.restore(abstract_train_state(lm.init, tx, jax.random.key(0), shardings=shardings))
            state = restored.state
            data.set_state(restored.data_state)
        fit(step, state, data, num_steps=num_steps, batch_sharding=batch_sharding(mesh), checkpointer=ckpt,
            checkpoint_every=4, writers=[writer], log_every=1, progress=False)  # fmt: skip
    writer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else None)
