"""lnemo quickstart: the whole miniature Llama-Nemotron recipe, as far as it exists, on 2 CPU cores.

Stages (``--stages``, comma separated, all by default):

* ``models``: build the ``small`` parent and a heterogeneous child from a block list, print a per-layer
  table (kind, params, KV bytes/token, FLOPs/token), run both, and print the measured prefill and decode-step
  speed-ups of child over parent beside the cost model's prediction.
* ``pretrain``: pretrain the parent on the synthetic reasoning corpus (``examples/pretrain.py``) with the
  progress bar, checkpoints under ``--out``/pretrain, and the held-out loss at the end.
* ``distill``: derive a narrower child from the pretrained parent and heal it by knowledge distillation,
  comparing an LM-only student with Puzzle's cosine + KL objective at the same token budget
  (``examples/distill.py``; needs the ``pretrain`` stage's checkpoint).
* ``sft``: reasoning SFT of the pretrained parent on paired "detailed thinking on/off" data, then pass@1,
  format compliance and response length per mode on held-out multi-step problems
  (``examples/sft_reasoning.py``; needs the ``pretrain`` stage's checkpoint). The quickstart's budget is
  small; ``examples/sft_reasoning.py`` with its defaults shows the full on/off margin.

Run ``python examples/quickstart.py --help`` for the flags.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys
import types

import jax

from lnemo import perf
from lnemo.models import AttentionConfig, BlockConfig, FFNConfig, ModelConfig, cost, init
from lnemo.models.speed import measure_phase_times, predict_phase_times



def _sibling(name: str) -> types.ModuleType:
    """Load a sibling example script by path under a private name (``distill`` etc. would clash with packages)."""
    path = pathlib.Path(__file__).resolve().parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_lnemo_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pretrain = _sibling("pretrain")
ablation = _sibling("distill").ablation
sft_run = _sibling("sft_reasoning").run

STAGES = ("models", "pretrain", "distill", "sft")


def child_of(parent: ModelConfig) -> ModelConfig:
    """A Puzzle-style child: attention removed or thinned in the middle, FFNs narrowed, first/last layers kept."""
    d_ffn = parent.blocks[0].ffn.intermediate_size
    kv = parent.blocks[0].attention.num_kv_heads
    middle = [
        BlockConfig(AttentionConfig.gqa(max(1, kv // 4)), FFNConfig.swiglu(d_ffn // 2)),
        BlockConfig(AttentionConfig.none(), FFNConfig.swiglu(d_ffn // 2)),
        BlockConfig(AttentionConfig.linear(), FFNConfig.swiglu(d_ffn // 4)),
        BlockConfig(AttentionConfig.none(), FFNConfig.swiglu(d_ffn // 4)),
    ]
    n = parent.num_layers
    blocks = [parent.blocks[0]] + [middle[i % len(middle)] for i in range(n - 2)] + [parent.blocks[-1]]
    return parent.replace(blocks=tuple(blocks[:n]))


def print_table(name: str, config: ModelConfig, context: int) -> None:
    print(f"\n{name}: {cost.param_count(config):,} parameters, "
          f"{cost.kv_bytes_per_token(config, config.dtype):,} KV bytes/token ({config.dtype})")
    print(f"{'layer':>5}  {'block':<28} {'params':>10} {'KV B/tok':>9} {'FLOPs/tok':>12}")
    for row in cost.layer_table(config, context=context, kv_dtype=config.dtype):
        print(f"{row['layer']:>5}  {row['block']:<28} {row['params']:>10,} {row['kv_bytes_per_token']:>9,} "
              f"{row['flops_per_token']:>12,}")


def stage_models(args: argparse.Namespace) -> dict[str, float]:
    layers = {} if args.num_layers is None else {"num_layers": args.num_layers}
    parent = getattr(ModelConfig, args.preset)(**layers)
    child = child_of(parent)
    print_table("parent", parent, args.seq_len)
    print_table("child", child, args.seq_len)
    p_params = init(parent, jax.random.key(0))
    c_params = init(child, jax.random.key(1))
    peak = perf.matmul_ceiling(n=1024)
    bandwidth = perf.memory_bandwidth(megabytes=128)
    shape = dict(batch=args.batch, seq_len=args.seq_len)
    mp, mc = measure_phase_times(parent, p_params, **shape), measure_phase_times(child, c_params, **shape)
    pp = predict_phase_times(parent, peak_flops=peak, bandwidth=bandwidth, **shape)
    pc = predict_phase_times(child, peak_flops=peak, bandwidth=bandwidth, **shape)
    out = {
        "prefill_speedup_measured": mp.prefill_s / mc.prefill_s,
        "prefill_speedup_predicted": pp.prefill_s / pc.prefill_s,
        "decode_step_speedup_measured": mp.decode_s / mc.decode_s,
        "decode_step_speedup_predicted": pp.decode_s / pc.decode_s,
    }
    print(f"\nchild over parent, batch {args.batch}, context {args.seq_len} "
          f"(prediction: roofline with the measured {peak / 1e9:.0f} GFLOP/s and "
          f"{bandwidth / 1e9:.0f} GB/s):")
    print(f"  prefill     speed-up {out['prefill_speedup_measured']:.2f}x  (predicted {out['prefill_speedup_predicted']:.2f}x)")
    print(f"  decode step speed-up {out['decode_step_speedup_measured']:.2f}x  (predicted {out['decode_step_speedup_predicted']:.2f}x)")
    return out


def stage_pretrain(args: argparse.Namespace) -> dict[str, float]:
    argv = ["--preset", args.preset, "--steps", str(args.pretrain_steps), "--batch", str(args.pretrain_batch),
            "--seq-len", str(args.pretrain_seq_len), "--warmup", str(max(1, args.pretrain_steps // 10)),
            "--checkpoint-every", str(max(1, args.pretrain_steps // 2)), "--eval-every",
            str(max(1, args.pretrain_steps // 3)), "--out", str(pathlib.Path(args.out) / "pretrain")]
    if args.num_layers is not None:
        argv += ["--num-layers", str(args.num_layers)]
    return pretrain.main(argv)


def pretrained_parent(args: argparse.Namespace):
    """The pretrain stage's parent config and parameters on a data-parallel mesh over all devices."""
    from lnemo.distill import params_from_checkpoint
    from lnemo.sharding import make_mesh
    from lnemo.train import adamw, warmup_cosine

    directory = pathlib.Path(args.out) / "pretrain" / "checkpoints"
    if not directory.is_dir():
        raise SystemExit(f"no pretrained parent in {directory}: run the 'pretrain' stage first "
                         f"(--stages pretrain,{args.stages})")
    parent = pretrain.model_config(pretrain.parse_args(
        ["--preset", args.preset] + ([] if args.num_layers is None else ["--num-layers", str(args.num_layers)])))
    mesh = make_mesh({"data": -1})
    schedule = warmup_cosine(1e-3, warmup_steps=1, total_steps=2)  # only the optimiser-state structure matters
    return parent, params_from_checkpoint(parent, str(directory), adamw(schedule), mesh), mesh


def stage_distill(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    parent, params, mesh = pretrained_parent(args)
    return ablation(parent, params, mesh, variants=("lm", "cos+kl"), steps=args.distill_steps,
                    batch=args.distill_batch, seq_len=128, eval_batches=2, eval_problems=32)


def stage_sft(args: argparse.Namespace) -> dict[str, float]:
    parent, params, _ = pretrained_parent(args)
    report = sft_run(parent, jax.device_get(params), steps=(args.sft_steps // 5, args.sft_steps - args.sft_steps // 5),
                     eval_problems=args.sft_eval_problems, eval_samples=1)
    return {"on_pass_at_1": report["on"]["pass_at_1"], "off_pass_at_1": report["off"]["pass_at_1"],
            "margin": report["margin"], "on_format_rate": report["on"]["format_rate"],
            "off_format_rate": report["off"]["format_rate"], "on_mean_length": report["on"]["mean_length"],
            "off_mean_length": report["off"]["mean_length"]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {STAGES}")
    parser.add_argument("--preset", default="small", choices=("tiny", "small"), help="parent model preset")
    parser.add_argument("--num-layers", type=int, default=None, help="parent layers (preset default if unset)")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the speed measurements")
    parser.add_argument("--seq-len", type=int, default=256, help="prefill length / decode context")
    parser.add_argument("--out", default="runs/quickstart", help="directory for checkpoints and logs")
    parser.add_argument("--pretrain-steps", type=int, default=200)
    parser.add_argument("--pretrain-batch", type=int, default=16)
    parser.add_argument("--pretrain-seq-len", type=int, default=256)
    parser.add_argument("--distill-steps", type=int, default=60)
    parser.add_argument("--distill-batch", type=int, default=8)
    parser.add_argument("--sft-steps", type=int, default=120, help="SFT steps (first fifth reasoning-only)")
    parser.add_argument("--sft-eval-problems", type=int, default=32)
    args = parser.parse_args(argv)
    unknown = [s for s in args.stages.split(",") if s not in STAGES]
    if unknown:
        parser.error(f"--stages has unknown stage(s) {unknown}; choose from {STAGES}")
    return args


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_args(argv)
    print(f"lnemo quickstart on {jax.device_count()} {jax.devices()[0].platform} device(s)")
    results = {}
    for stage in args.stages.split(","):
        print(f"\n=== stage: {stage} ===")
        results[stage] = {"models": stage_models, "pretrain": stage_pretrain, "distill": stage_distill,
                          "sft": stage_sft}[stage](args)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
