"""Distil the pretrained ``small`` parent into a narrower child: Puzzle's global-KD loss ablation, in miniature.

1. The parent: restored from ``examples/pretrain.py``'s checkpoints (``--teacher-checkpoint
   runs/pretrain/checkpoints``, same ``--preset``/``--num-layers``) or, without one, pretrained here for
   ``--parent-steps`` on the synthetic reasoning corpus.
2. The child: every FFN at half width and attention removed from every other middle layer, initialised
   from the parent by slicing (``lnemo.distill.slice_student``).
3. Four copies of the child are trained at the same token budget (same batches, same steps) with
   LM loss only / KL only / cosine + KL / cosine + KL + LM (``lnemo.distill.kd_objective``), the parent
   frozen on the same mesh.
4. The table: held-out forward KL to the parent, held-out LM loss, and task accuracy on held-out synthetic
   problems, twice: ``greedy``, the greedy completion of the prompt (``lnemo.generate``) states the right
   answer; ``forced``, every answer token is the arg-max prediction given the gold prompt and trace
   (teacher-forced; informative where a briefly trained parent rarely completes a whole trace correctly).

Puzzle (arXiv 2411.19146, reference sheet §6.8) found cosine + KL best and every variant with an LM loss
worse; at this scale expect the KD variants to reach a far lower KL to the parent than LM only.

Example: ``python examples/distill.py`` (about 6 minutes on 2 CPU cores), or
``python examples/distill.py --teacher-checkpoint runs/pretrain/checkpoints --steps 300``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lnemo.data import ByteTokenizer, Problem, ProblemSource, extract_answer, synthetic_pipeline
from lnemo.data.tasks import ANSWER_PREFIX
from lnemo.distill import (
    kd_objective,
    make_distill_eval_fn,
    params_from_checkpoint,
    place_params,
    setup_distillation,
    slice_student,
)
from lnemo.generate import generate
from lnemo.models import (
    AttentionConfig,
    BlockConfig,
    FFNConfig,
    ModelConfig,
    cost,
    forward,
)
from lnemo.sharding import batch_sharding, make_mesh, parse_mesh_axes
from lnemo.train import adamw, fit, make_eval_fn, warmup_cosine
from lnemo.train.model_setup import setup_model_training
from lnemo.train.objectives import lm_objective
from lnemo.train.state import TrainState
from lnemo.types import PyTree

#: name -> (kl weight, cosine weight, LM weight): the rows of Puzzle's GKD ablation.
VARIANTS = {
    "lm": (0.0, 0.0, 1.0),
    "kl": (1.0, 0.0, 0.0),
    "cos+kl": (1.0, 1.0, 0.0),
    "cos+kl+lm": (1.0, 1.0, 1.0),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", choices=("tiny", "small"))
    p.add_argument("--num-layers", type=int, default=None, help="override the preset's layer count")
    p.add_argument("--teacher-checkpoint", default=None, help="examples/pretrain.py's <out>/checkpoints")
    p.add_argument("--parent-steps", type=int, default=200, help="pretraining steps without a checkpoint")
    p.add_argument("--parent-lr", type=float, default=3e-3)
    p.add_argument("--steps", type=int, default=80, help="training steps of every student")
    p.add_argument("--lr", type=float, default=1e-3, help="student peak learning rate")
    p.add_argument("--batch", type=int, default=8, help="global batch (rows)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {tuple(VARIANTS)}")
    p.add_argument("--chunk-size", type=int, default=None, help="form logits in sequence chunks of this size")
    p.add_argument("--eval-batches", type=int, default=4, help="held-out batches for KL and LM loss")
    p.add_argument("--eval-problems", type=int, default=64, help="held-out problems for task accuracy")
    p.add_argument("--eval-difficulties", default="1,2")
    p.add_argument("--mesh", default="data=-1,fsdp=1,tensor=1", help="mesh axes, e.g. data=2,fsdp=2,tensor=2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the results table here as JSON")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def child_of(parent: ModelConfig) -> ModelConfig:
    """Every FFN at half width; attention removed from the odd layers strictly inside the stack."""
    blocks = []
    for i, block in enumerate(parent.blocks):
        attention = AttentionConfig.none() if i % 2 == 1 and i < parent.num_layers - 1 else block.attention
        blocks.append(BlockConfig(attention, FFNConfig.swiglu(block.ffn.intermediate_size // 2)))
    return parent.replace(blocks=tuple(blocks))


def answer_accuracy(config: ModelConfig, params: PyTree, problems: list[Problem], tokenizer: ByteTokenizer,
                    *, max_new_tokens: int) -> float:
    """Fraction of problems whose greedy completion of ``bos + prompt + newline`` states the right answer."""
    prompts = [[tokenizer.bos_id, *tokenizer.encode(p.prompt + "\n")] for p in problems]
    width = max(len(p) for p in prompts)
    tokens = np.zeros((len(prompts), width), np.int32)
    where = np.zeros((len(prompts), width), bool)
    for r, ids in enumerate(prompts):
        tokens[r, width - len(ids):], where[r, width - len(ids):] = ids, True
    out = generate(config, params, jnp.asarray(tokens), jax.random.key(0), where=jnp.asarray(where),
                   max_new_tokens=max_new_tokens, eos_ids=(tokenizer.eos_id,), pad_id=tokenizer.pad_id)
    out_tokens, lengths = jax.device_get((out.tokens, out.lengths))
    correct = 0
    for problem, row, n in zip(problems, out_tokens, lengths, strict=True):
        answer = extract_answer(tokenizer.decode([int(t) for t in row[:n] if t < 256]))
        correct += answer is not None and problem.verify(answer)
    return correct / len(problems)


def answer_accuracy_teacher_forced(config: ModelConfig, params: PyTree, problems: list[Problem],
                                   tokenizer: ByteTokenizer) -> float:
    """Fraction of problems whose every answer token is the arg-max prediction given the gold prompt and trace."""
    docs, spans = [], []
    for p in problems:
        head = [tokenizer.bos_id, *tokenizer.encode(f"{p.prompt}\n{p.trace}\n{ANSWER_PREFIX} ")]
        docs.append(head + tokenizer.encode(p.answer))
        spans.append((len(head), len(docs[-1])))
    tokens = np.full((len(docs), max(map(len, docs))), tokenizer.pad_id, np.int32)
    for r, doc in enumerate(docs):
        tokens[r, : len(doc)] = doc
    logits = jax.jit(lambda p, t: forward(config, p, t).logits)(params, jnp.asarray(tokens))
    predicted = np.asarray(jnp.argmax(logits, axis=-1))
    return float(np.mean([np.array_equal(predicted[r, a - 1 : b - 1], tokens[r, a:b])
                          for r, (a, b) in enumerate(spans)]))


def pretrain_parent(config: ModelConfig, args: argparse.Namespace, mesh, tokenizer, local_batch: int) -> PyTree:
    schedule = warmup_cosine(args.parent_lr, warmup_steps=min(50, args.parent_steps // 5),
                             total_steps=args.parent_steps)
    run = setup_model_training(config, lm_objective(config), adamw(schedule), mesh, jax.random.key(args.seed),
                               learning_rate_fn=schedule)
    data = iter(synthetic_pipeline(tokenizer, seq_len=args.seq_len, batch_size=local_batch,
                                   source=ProblemSource(seed=args.seed + 1)))
    state = fit(run.step, run.state, data, num_steps=args.parent_steps, batch_sharding=run.batch_sharding,
                progress=not args.no_progress)
    return state.params


def ablation(parent: ModelConfig, parent_params: PyTree, mesh, *, variants: Sequence[str] = tuple(VARIANTS),
             steps: int = 100, batch: int = 8, seq_len: int = 128, lr: float = 1e-3, chunk_size: int | None = None,
             eval_batches: int = 4, eval_problems: int = 64, eval_difficulties: Sequence[int] = (1, 2),
             seed: int = 0) -> dict[str, dict[str, float]]:
    """Train ``child_of(parent)`` once per variant at the same token budget and print the comparison table.

    Every variant starts from the same sliced child, sees the same batches in the same order, and uses the
    same optimiser and schedule; only the objective's weights differ (``VARIANTS``).

    Returns:
      ``{row: {"kl", "lm", "accuracy", "answer_tf"[, "train_loss_first", "train_loss_last"]}}`` for the
      parent, the sliced child before training, and every variant.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"variants: unknown {unknown}; choose from {tuple(VARIANTS)}")
    if batch % jax.process_count():
        raise ValueError(f"batch={batch} must divide by the process count {jax.process_count()}")
    local_batch = batch // jax.process_count()
    tokenizer = ByteTokenizer()
    child = child_of(parent)
    parent_params = place_params(parent, parent_params, mesh)
    child_init = slice_student(parent, jax.device_get(parent_params), child)
    flops = [cost.forward_flops_per_token(c, seq_len) for c in (child, parent)]
    print(f"parent {cost.param_count(parent):,} params, child {cost.param_count(child):,} params "
          f"({flops[0] / flops[1]:.0%} of the parent's forward FLOPs/token)")

    held_out = list(itertools.islice(iter(synthetic_pipeline(
        tokenizer, seq_len=seq_len, batch_size=local_batch, source=ProblemSource(seed=seed + 10_000))),
        eval_batches))
    problems = list(itertools.islice(ProblemSource(difficulties=tuple(eval_difficulties), seed=seed + 20_000),
                                     eval_problems))
    max_new = max(len(tokenizer.encode(p.trace + "\nAnswer: " + p.answer)) for p in problems) + 8
    sharding = batch_sharding(mesh)
    lm_eval = {id(c): make_eval_fn(lm_objective(c), held_out, batch_sharding=sharding) for c in (parent, child)}
    kl_eval = make_distill_eval_fn(kd_objective(child, parent, hidden_weight=0.0), parent_params, held_out,
                                   batch_sharding=sharding)

    def evaluate(config: ModelConfig, params: PyTree) -> dict[str, float]:
        state = TrainState(jnp.zeros((), jnp.int32), params, None, None)
        return {"kl": kl_eval(state)["kl"] if config is child else 0.0, "lm": lm_eval[id(config)](state)["loss"],
                "accuracy": answer_accuracy(config, params, problems, tokenizer, max_new_tokens=max_new),
                "answer_tf": answer_accuracy_teacher_forced(config, params, problems, tokenizer)}

    results = {"parent": evaluate(parent, parent_params), "child, sliced": evaluate(child, child_init)}
    schedule = warmup_cosine(lr, warmup_steps=max(1, steps // 10), total_steps=steps)
    for name in variants:
        kl_w, cos_w, lm_w = VARIANTS[name]
        objective = kd_objective(child, parent, kl_weight=kl_w, hidden_weight=cos_w, lm_weight=lm_w,
                                 chunk_size=chunk_size)
        run = setup_distillation(child, parent, parent_params, objective, adamw(schedule), mesh,
                                 jax.random.key(seed), init_params=lambda k: child_init,
                                 learning_rate_fn=schedule)
        data = iter(synthetic_pipeline(tokenizer, seq_len=seq_len, batch_size=local_batch,
                                       source=ProblemSource(seed=seed + 2)))
        state, history = run.state, []
        for rows in itertools.islice(data, steps):
            state, metrics = run.step(state, rows)
            history.append(metrics)
        losses = [float(m["loss"]) for m in jax.device_get(history)]
        first = float(np.mean(losses[: max(1, len(losses) // 10)]))
        last = float(np.mean(losses[-max(1, len(losses) // 10):]))
        results[name] = {**evaluate(child, state.params), "train_loss_first": first, "train_loss_last": last}
        print(f"  {name:<10} trained: objective {first:.4f} -> {last:.4f}")

    print(f"\nheld-out, same token budget ({steps} steps x {batch} x {seq_len} tokens per student), "
          f"{len(problems)} problems of difficulty {tuple(eval_difficulties)}:\n"
          "  greedy = the greedy completion of the prompt states the right answer;\n"
          "  forced = every answer token is the arg-max prediction given the gold prompt and trace")
    print(f"{'model':<16} {'KL to parent':>12} {'LM loss':>8} {'greedy':>7} {'forced':>7}")
    for name, row in results.items():
        print(f"{name:<16} {row['kl']:>12.4f} {row['lm']:>8.4f} {row['accuracy']:>7.1%} {row['answer_tf']:>7.1%}")
    return results


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    layers = {} if args.num_layers is None else {"num_layers": args.num_layers}
    parent = getattr(ModelConfig, args.preset)(**layers)
    mesh = make_mesh(parse_mesh_axes(args.mesh))
    if args.batch % jax.process_count():
        raise SystemExit(f"--batch={args.batch} must divide by the process count {jax.process_count()}")
    variants = [v.strip() for v in args.variants.split(",")]
    if any(v not in VARIANTS for v in variants):
        raise SystemExit(f"--variants={args.variants!r}: choose from {tuple(VARIANTS)}")
    if args.teacher_checkpoint:
        like_pretrain = adamw(warmup_cosine(1.0, warmup_steps=0, total_steps=1))  # only the state's structure
        parent_params = params_from_checkpoint(parent, args.teacher_checkpoint, like_pretrain, mesh)
        print(f"parent restored from {args.teacher_checkpoint}")
    else:
        print(f"pretraining the {args.preset} parent for {args.parent_steps} steps")
        parent_params = pretrain_parent(parent, args, mesh, ByteTokenizer(), args.batch // jax.process_count())
    results = ablation(parent, parent_params, mesh, variants=variants, steps=args.steps, batch=args.batch,
                       seq_len=args.seq_len, lr=args.lr, chunk_size=args.chunk_size, eval_batches=args.eval_batches,
                       eval_problems=args.eval_problems,
                       eval_difficulties=[int(d) for d in args.eval_difficulties.split(",")], seed=args.seed)
    if args.out:
        path = pathlib.Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
