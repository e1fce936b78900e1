"""Training-engine benchmarks: step MFU (fp32, bf16), speed vs torch/transformers, sharded == single, checkpoint speed.

Usage: ``python benchmarks/train.py`` -> ``benchmarks/results/train.json``.

* ``train_step_mfu_fp32`` / ``_bf16``: model FLOPs per step (``cost.train_flops_per_token``) over the step time,
  divided by the float32 matmul ceiling measured in this process just before. A ~30M-parameter model at
  sequence 512. The fp32, bf16 and torch steps are timed round-robin (medians), so a change of machine load
  hits all three alike.
* ``bf16_over_fp32_step_speedup``: fp32 step time over the bf16-compute step time (float32 master params).
* ``train_speedup_vs_torch``: lnemo fp32 tokens/s over ``transformers`` ``LlamaForCausalLM`` + torch AdamW
  tokens/s on the CPU, same config, same batch, measured in this run (skipped with a reason if torch is absent).
* ``sharded8_vs_single_loss_rel_diff``: max relative difference of 3 training losses on 8 simulated devices
  (2 x 2 x 2 data/fsdp/tensor mesh) vs 1 device, run in a subprocess (the device count is fixed at start-up).
* ``checkpoint_save_seconds_per_gb``: blocking orbax save of the train state, seconds per GB written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

from _common import emit

from lnemo import perf
from lnemo.checkpoint import Checkpointer
from lnemo.models import ModelConfig, cost
from lnemo.sharding import make_mesh
from lnemo.train import adamw
from lnemo.train.model_setup import setup_model_training
from lnemo.train.objectives import lm_objective


def bench_config(dtype: str = "float32") -> ModelConfig:
    """~27M parameters: D=512, 8 layers, 8 heads of 64, 8 KV heads, SwiGLU 1536, byte vocabulary."""
    return ModelConfig.homogeneous(vocab_size=272, hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=8,
                                   intermediate_size=1536, rope_theta=10000.0, dtype=dtype)


def make_batch(cfg: ModelConfig, batch: int, seq_len: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, cfg.vocab_size, (batch, seq_len + 1), dtype=np.int32)
    return {"tokens": tokens[:, :-1], "targets": tokens[:, 1:], "loss_mask": np.ones((batch, seq_len), bool),
            "segment_ids": np.ones((batch, seq_len), np.int32),
            "positions": np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch, seq_len)).copy()}


def jax_stepper(cfg: ModelConfig, batch: dict[str, np.ndarray]):
    """A zero-argument function running one blocking training step of ``cfg`` (warmed up), and the state getter."""
    mesh = make_mesh({"data": 1}, devices=jax.devices()[:1])
    run = setup_model_training(cfg, lm_objective(cfg), adamw(1e-4), mesh, jax.random.key(0))
    placed = jax.device_put(batch, run.batch_sharding)
    holder = [run.state]

    def one() -> None:
        holder[0], metrics = run.step(holder[0], placed)
        jax.block_until_ready(metrics)

    for _ in range(2):
        one()
    return one, lambda: holder[0]


def interleaved_seconds(steppers: dict[str, object], repeats: int) -> dict[str, float]:
    """Median seconds per step of each stepper, timed round-robin so load changes hit all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(repeats):
        for name, one in steppers.items():
            t0 = time.perf_counter()
            one()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def torch_stepper(cfg: ModelConfig, batch: dict[str, np.ndarray]):
    """One blocking training step of the same Llama in ``transformers`` with torch AdamW (warmed up)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    hf = LlamaConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=1536,
                     num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads, num_key_value_heads=8,
                     rope_theta=cfg.rope_theta, max_position_embeddings=4096, tie_word_embeddings=False)
    model = LlamaForCausalLM(hf).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.tensor(batch["tokens"], dtype=torch.long)
    labels = torch.tensor(batch["targets"], dtype=torch.long)

    def one() -> None:
        logits = model(tokens).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        one()
    return one


SHARDED_CHECK = r"""
import jax, json, sys
jax.config.update("jax_num_cpu_devices", 8)
import numpy as np
sys.path.insert(0, sys.argv[1])
from train import bench_config, make_batch
from lnemo.models import ModelConfig
from lnemo.sharding import make_mesh
from lnemo.train import adamw
from lnemo.train.model_setup import setup_model_training
from lnemo.train.objectives import lm_objective
cfg = ModelConfig.tiny(num_layers=4)
batch = make_batch(cfg, 8, 128)
out = {}
for name, axes, devs in (("single", {"data": 1}, jax.devices()[:1]), ("sharded8", {"data": 2, "fsdp": 2, "tensor": 2}, None)):
    run = setup_model_training(cfg, lm_objective(cfg), adamw(1e-3), make_mesh(axes, devices=devs), jax.random.key(0))
    state, losses = run.state, []
    for _ in range(3):
        state, m = run.step(state, jax.device_put(batch, run.batch_sharding))
        losses.append(float(m["loss"]))
    out[name] = losses
print(json.dumps(out))
"""


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    cfg32 = bench_config("float32")
    batch = make_batch(cfg32, args.batch, args.seq_len)
    tokens = args.batch * args.seq_len
    flops = tokens * cost.train_flops_per_token(cfg32, args.seq_len)
    figures: dict[str, float | str] = {"bench_params": cost.param_count(cfg32)}

    peak = perf.matmul_ceiling(repeats=args.repeats)
    fp32, get_state = jax_stepper(cfg32, batch)
    bf16, _ = jax_stepper(bench_config("bfloat16"), batch)
    steppers = {"fp32": fp32, "bf16": bf16}
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as err:
        figures["train_speedup_vs_torch"] = f"unavailable: {err}"
    else:
        steppers["torch"] = torch_stepper(cfg32, batch)
    seconds = interleaved_seconds(steppers, args.repeats)
    figures["train_step_mfu_fp32"] = flops / seconds["fp32"] / peak
    figures["train_step_mfu_bf16"] = flops / seconds["bf16"] / peak
    figures["bf16_over_fp32_step_speedup"] = seconds["fp32"] / seconds["bf16"]
    if "torch" in seconds:
        figures["train_speedup_vs_torch"] = seconds["torch"] / seconds["fp32"]
        figures["torch_train_mfu_fp32"] = flops / seconds["torch"] / peak
    state = get_state()

    result = subprocess.run([sys.executable, "-c", SHARDED_CHECK, str(__import__("pathlib").Path(__file__).parent)],
                            capture_output=True, text=True, check=True)
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    single, sharded = np.array(losses["single"]), np.array(losses["sharded8"])
    figures["sharded8_vs_single_loss_rel_diff"] = float(np.max(np.abs(sharded - single) / np.abs(single)))

    directory = tempfile.mkdtemp()
    try:
        ckpt = Checkpointer(directory, async_save=False)
        nbytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
        t0 = time.perf_counter()
        ckpt.save(1, state)
        ckpt.wait_until_finished()
        figures["checkpoint_save_seconds_per_gb"] = (time.perf_counter() - t0) / (nbytes / 1e9)
        ckpt.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    emit("train", figures)
    return figures


if __name__ == "__main__":
    main()
