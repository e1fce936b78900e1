"""Generation benchmarks: cached decode against transformers, against full recomputation, child against parent.

Figures (printed as JSON lines and merged into benchmarks/results/generate.json):

- ``decode_tokens_per_s``: greedy generation of ``--new-tokens`` tokens for ``--batch`` prompts of
  ``--prompt-len`` tokens with ``lnemo.generate.generate`` (prefill included), tokens generated per second.
  Absolute, so only meaningful relative to the machine (see the ratios).
- ``decode_speedup_vs_transformers``: the same config and weights exported with ``lnemo.models.hf.save``,
  loaded by ``transformers.LlamaForCausalLM`` (torch CPU, float32) and run with ``generate`` (greedy, KV
  cache, exactly the same number of new tokens): its wall time over ours. Target >= 5.
- ``decode_speedup_vs_recompute``: decode time per token at ``--recompute-context`` tokens of context:
  recomputing the whole sequence for every new token (a jitted ``fori_loop`` of full forwards) over the
  cached decode (a jitted ``fori_loop`` of the 1-token cached forward that ``generate``'s loop runs, started
  from a prefilled cache, so the prefill is not timed). Target >= 10.
- ``child_over_parent_decode_speedup``: the same cached decode time (``--child-tokens`` steps, batch
  ``--batch``) of the parent over a child with every other attention layer removed (attention ``none``;
  FFNs kept), at ``--child-context`` tokens of context.

Every timing is the median of ``--repeats`` interleaved runs after a warm-up, measured in one process.

Run: ``PYTHONPATH=. python benchmarks/generate.py`` (about 3-5 CPU minutes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _common import emit  # noqa: E402

from lnemo.generate import generate  # noqa: E402
from lnemo.models import AttentionConfig, BlockConfig, ModelConfig, forward, hf, init, init_cache  # noqa: E402


def medians(programs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall seconds of each program, runs interleaved so that load changes hit all alike."""
    for program in programs.values():
        program()
    times: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(repeats):
        for name, program in programs.items():
            start = time.perf_counter()
            program()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def lnemo_generate(config: ModelConfig, params, prompts, n: int) -> Callable[[], object]:
    key = jax.random.key(0)
    return lambda: jax.block_until_ready(generate(config, params, prompts, key, max_new_tokens=n).tokens)


def recompute_decode(config: ModelConfig, params, prompts, n: int) -> Callable[[], object]:
    """Greedy decoding of ``n`` tokens with a full forward over the whole buffer for every token."""
    b, p = prompts.shape

    @jax.jit
    def run(params, prompts):
        buf = jnp.concatenate([prompts, jnp.zeros((b, n), prompts.dtype)], axis=1)

        def body(i, buf):
            logits = forward(config, params, buf).logits
            nxt = jnp.argmax(jax.lax.dynamic_index_in_dim(logits, p + i - 1, axis=1, keepdims=False), axis=-1)
            return jax.lax.dynamic_update_index_in_dim(buf, nxt.astype(buf.dtype)[:, None], p + i, axis=1)

        return jax.lax.fori_loop(0, n, body, buf)

    return lambda: jax.block_until_ready(run(params, prompts))


def half_attention_child(config: ModelConfig) -> ModelConfig:
    blocks = [BlockConfig(AttentionConfig.none(), b.ffn) if i % 2 else b for i, b in enumerate(config.blocks)]
    return config.replace(blocks=tuple(blocks))


def child_params(parent_params, child: ModelConfig):
    out = dict(parent_params)
    for i, block in enumerate(child.blocks):
        if block.attention.kind == "none":
            out[f"layers_{i}"] = {k: v for k, v in parent_params[f"layers_{i}"].items() if k != "attn"}
    return out


def vs_transformers(config: ModelConfig, params, prompts: np.ndarray, n: int, repeats: int) -> dict[str, float]:
    import torch
    from transformers import LlamaForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        hf.save(tmp, config, params)
        model = LlamaForCausalLM.from_pretrained(tmp, torch_dtype=torch.float32).eval()
    ids = torch.as_tensor(prompts, dtype=torch.long)

    def theirs():
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False, use_cache=True, pad_token_id=0)
        assert out.shape[1] == prompts.shape[1] + n

    t = medians({"lnemo": lnemo_generate(config, params, jnp.asarray(prompts), n), "transformers": theirs}, repeats)
    agree = np.mean(np.asarray(generate(config, params, jnp.asarray(prompts), jax.random.key(0), max_new_tokens=n).tokens)
                    == model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                                      do_sample=False, pad_token_id=0)[:, prompts.shape[1]:].numpy())
    return {"lnemo_s": t["lnemo"], "transformers_s": t["transformers"], "greedy_token_agreement": float(agree),
            "torch_threads": torch.get_num_threads()}


def cached_decode(config: ModelConfig, params, prompts, n: int) -> Callable[[], object]:
    """``n`` greedy decode steps from a prefilled cache: the body of ``generate``'s loop, without the prefill."""
    b, p = prompts.shape
    cache = jax.jit(lambda params, prompts: forward(config, params, prompts, cache=init_cache(config, b, p + n)).cache)(
        params, prompts)
    first = prompts[:, -1]

    @jax.jit
    def run(params, cache, tokens):
        def body(i, carry):
            cache, tokens = carry
            out = forward(config, params, tokens[:, None], cache=cache)
            return out.cache, jnp.argmax(out.logits[:, 0], axis=-1).astype(tokens.dtype)

        return jax.lax.fori_loop(0, n, body, (cache, tokens))[1]

    return lambda: jax.block_until_ready(run(params, cache, first))


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--recompute-context", type=int, default=512)
    p.add_argument("--recompute-batch", type=int, default=4)
    p.add_argument("--recompute-tokens", type=int, default=16)
    p.add_argument("--child-context", type=int, default=512)
    p.add_argument("--child-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-transformers", action="store_true", help="only the recompute and child figures")
    args = p.parse_args(argv)
    config = ModelConfig.small()
    params = jax.jit(init, static_argnums=0)(config, jax.random.key(0))
    rng = np.random.default_rng(0)
    prompts = rng.integers(0, 256, (args.batch, args.prompt_len)).astype(np.int32)

    figures: dict[str, object] = {}
    if not args.skip_transformers:
        peer = vs_transformers(config, params, prompts, args.new_tokens, args.repeats)
        figures["decode_tokens_per_s"] = args.batch * args.new_tokens / peer["lnemo_s"]
        figures["decode_speedup_vs_transformers"] = peer["transformers_s"] / peer["lnemo_s"]
        figures["decode_vs_transformers_setting"] = {"batch": args.batch, "prompt_len": args.prompt_len,
                                                     "new_tokens": args.new_tokens, "model": "small", **peer}

    long = jnp.asarray(rng.integers(0, 256, (args.recompute_batch, args.recompute_context)).astype(np.int32))
    n = args.recompute_tokens
    t = medians({"cached": cached_decode(config, params, long, n), "recompute": recompute_decode(config, params, long, n)},
                args.repeats)
    cached = t["cached"]
    figures["decode_speedup_vs_recompute"] = t["recompute"] / cached
    figures["decode_vs_recompute_setting"] = {"batch": args.recompute_batch, "context": args.recompute_context,
                                              "new_tokens": n, "cached_decode_s": cached, "recompute_s": t["recompute"]}

    child = half_attention_child(config)
    c_params = child_params(params, child)
    ctx = jnp.asarray(rng.integers(0, 256, (args.batch, args.child_context)).astype(np.int32))
    n = args.child_tokens
    t = medians({"parent": cached_decode(config, params, ctx, n), "child": cached_decode(child, c_params, ctx, n)},
                args.repeats)
    parent_s, child_s = t["parent"], t["child"]
    figures["child_over_parent_decode_speedup"] = parent_s / child_s
    figures["child_setting"] = {"batch": args.batch, "context": args.child_context, "new_tokens": n,
                                "attention_layers": [sum(b.attention.kind == "gqa" for b in c.blocks)
                                                     for c in (config, child)],
                                "parent_decode_s": parent_s, "child_decode_s": child_s}
    emit("generate", figures)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
