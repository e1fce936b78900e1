"""Pretrain a parent model on the synthetic reasoning corpus with the sharded training engine.

The corpus is the library's embedded default data: procedurally generated arithmetic, sorting and counting
problems with step-by-step traces (``lnemo.data.tasks``), tokenised by the byte tokenizer and packed into
fixed-length rows. Training runs on a ``data`` x ``fsdp`` x ``tensor`` mesh over all devices, shows a progress
bar with loss, tokens/s and MFU, logs JSONL + TensorBoard under ``--out``, checkpoints every
``--checkpoint-every`` steps (and on Ctrl-C), and resumes from the newest checkpoint in ``--out``.

Example: ``python examples/pretrain.py --steps 300`` (see examples/README.md for the loss it reaches).

Multi-process: start one copy per process with the same flags plus ``--coordinator HOST:PORT``
(process 0's address), ``--num-processes N`` and ``--process-id i``. Each process reads its own disjoint
shard of the corpus and feeds ``--batch / N`` rows; the mesh spans the devices of all processes. On one
machine with CPU devices only::

    for i in 0 1; do
      JAX_NUM_CPU_DEVICES=2 python examples/pretrain.py --preset tiny --steps 60 --warmup 10 --batch 8 \\
          --seq-len 64 --out runs/pretrain-2proc --coordinator 127.0.0.1:12355 --num-processes 2 --process-id $i &
    done; wait
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import pathlib
import sys

import jax

from lnemo import perf
from lnemo.checkpoint import Checkpointer
from lnemo.data import ByteTokenizer, ProblemSource, synthetic_pipeline
from lnemo.models import ModelConfig, cost
from lnemo.sharding import make_mesh, parse_mesh_axes
from lnemo.train import JsonlWriter, TensorBoardWriter, adamw, fit, make_eval_fn, warmup_cosine
from lnemo.train.model_setup import setup_model_training
from lnemo.train.objectives import lm_objective


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", choices=("tiny", "small"))
    p.add_argument("--num-layers", type=int, default=None, help="override the preset's layer count")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="compute dtype")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=16, help="global batch (rows)")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--accum", type=int, default=1, help="gradient-accumulation micro-batches per step")
    p.add_argument("--mesh", default="data=-1,fsdp=1,tensor=1", help="mesh axes, e.g. data=2,fsdp=2,tensor=2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/pretrain")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-batches", type=int, default=4)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--coordinator", default=None, help="HOST:PORT of process 0, for multi-process runs")
    p.add_argument("--num-processes", type=int, default=None, help="processes in a multi-process run")
    p.add_argument("--process-id", type=int, default=None, help="this process's index, 0 .. N-1")
    args = p.parse_args(argv)
    distributed = (args.coordinator, args.num_processes, args.process_id)
    if any(x is not None for x in distributed) and any(x is None for x in distributed):
        p.error("multi-process runs need all of --coordinator, --num-processes and --process-id")
    return args


def model_config(args: argparse.Namespace) -> ModelConfig:
    layers = {} if args.num_layers is None else {"num_layers": args.num_layers}
    return getattr(ModelConfig, args.preset)(dtype=args.dtype, **layers)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    if args.coordinator is not None:  # before anything touches the devices
        jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)
    tokenizer = ByteTokenizer()
    config = model_config(args)
    mesh = make_mesh(parse_mesh_axes(args.mesh))
    if args.batch % jax.process_count():
        raise SystemExit(f"--batch={args.batch} must divide by the process count {jax.process_count()}")
    local_batch = args.batch // jax.process_count()
    schedule = warmup_cosine(args.lr, warmup_steps=args.warmup, total_steps=args.steps)
    optimizer = adamw(schedule)
    loss_fn = lm_objective(config)
    run = setup_model_training(config, loss_fn, optimizer, mesh, jax.random.key(args.seed),
                               accum_steps=args.accum, learning_rate_fn=schedule)

    train_source = ProblemSource(seed=args.seed)
    data = iter(synthetic_pipeline(tokenizer, seq_len=args.seq_len, batch_size=local_batch, source=train_source))
    held_out = synthetic_pipeline(tokenizer, seq_len=args.seq_len, batch_size=local_batch,
                                  source=ProblemSource(seed=args.seed + 10_000))
    eval_fn = make_eval_fn(loss_fn, list(itertools.islice(iter(held_out), args.eval_batches)),
                           batch_sharding=run.batch_sharding)

    out = pathlib.Path(args.out)
    run_config = {"model": json.loads(json.dumps(dataclasses.asdict(config), default=str)), "args": vars(args)}
    checkpointer = Checkpointer(out / "checkpoints", config=run_config)
    state = run.state
    if checkpointer.latest_step() is not None:
        restored = checkpointer.restore(run.abstract_state)
        state = restored.state
        if restored.data_state is not None:
            data.set_state(restored.data_state)
        print(f"resumed from step {int(state.step)} in {checkpointer.directory}")
    writers = [JsonlWriter(out / "metrics.jsonl"), TensorBoardWriter(out / "tensorboard")] \
        if jax.process_index() == 0 else []
    peak = perf.matmul_ceiling(dtype=config.dtype, n=1024) * jax.device_count() / max(jax.local_device_count(), 1)
    try:
        state = fit(run.step, state, data, num_steps=args.steps, batch_sharding=run.batch_sharding,
                    eval_fn=eval_fn, eval_every=args.eval_every, checkpointer=checkpointer,
                    checkpoint_every=args.checkpoint_every, writers=writers, log_every=args.log_every,
                    flops_per_token=cost.train_flops_per_token(config, args.seq_len), peak_flops=peak,
                    progress=not args.no_progress)
    finally:
        checkpointer.close()
        for w in writers:
            w.close()
    final = eval_fn(state)
    print(f"held-out loss after {int(state.step)} steps: {final['loss']:.4f} nats/token")
    return final


if __name__ == "__main__":
    main(sys.argv[1:])
