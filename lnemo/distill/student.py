"""A student initialised from its parent by slicing: fewer KV heads, narrower FFNs, removed sub-blocks.

This is the simple initialisation a distillation experiment needs to start from the parent's function
rather than from noise. Puzzle's own initialisations (FFN channels ranked by contribution on calibration
data, linear replacements) belong to the architecture search.
"""

from __future__ import annotations

from lnemo.models import ModelConfig
from lnemo.models.surgery import check_params, layer_key
from lnemo.types import PyTree


def _attention(parent_block, child_block, params: PyTree | None, layer: int) -> PyTree | None:
    p, c = parent_block.attention, child_block.attention
    if c.kind == "none":
        return None
    if p == c:
        return params
    if p.kind == c.kind == "gqa" and p.num_kv_heads % c.num_kv_heads == 0:
        group = p.num_kv_heads // c.num_kv_heads

        def pool(kernel_DxGxK):
            d, g, k = kernel_DxGxK.shape
            return kernel_DxGxK.reshape(d, g // group, group, k).mean(axis=2)

        return {**params, "k_proj": pool(params["k_proj"]), "v_proj": pool(params["v_proj"])}
    raise ValueError(f"layer {layer}: cannot slice attention {p.describe()} into {c.describe()}")


def _ffn(parent_block, child_block, params: PyTree | None, layer: int) -> PyTree | None:
    p, c = parent_block.ffn, child_block.ffn
    if c.kind == "none":
        return None
    if p == c:
        return params
    single = len(p.intermediate_sizes) == len(c.intermediate_sizes) == 1
    if p.kind == c.kind == "swiglu" and single and c.intermediate_size <= p.intermediate_size:
        width = c.intermediate_size
        return {**params, "gate_proj": params["gate_proj"][:, :width], "up_proj": params["up_proj"][:, :width],
                "down_proj": params["down_proj"][:width, :]}
    raise ValueError(f"layer {layer}: cannot slice FFN {p.describe()} into {c.describe()}")


def slice_student(parent: ModelConfig, parent_params: PyTree, student: ModelConfig) -> PyTree:
    """Student parameters cut from the parent's, layer by layer.

    Per layer: an identical sub-block is copied; a GQA layer with ``n_kv / g`` KV heads mean-pools each
    group of ``g`` consecutive K and V heads (the query heads keep their grouping); a SwiGLU of width
    ``I' <= I`` keeps the first ``I'`` channels of gate/up and rows of down; a removed (``none``)
    sub-block is dropped. Embeddings, final norm and LM head are copied.

    Args:
      parent: the parent model.
      parent_params: its parameters.
      student: a model with the parent's vocabulary, width, heads and layer count.

    Returns:
      Parameters of ``student`` (checked against it).

    Example:
      >>> child = parent.with_block(2, BlockConfig(AttentionConfig.none(), FFNConfig.swiglu(384)))
      >>> child_params = slice_student(parent, parent_params, child)

    References:
      Puzzle, arXiv 2411.19146: child initialisation from parent weights (reference sheet §6.2; mean-pooled
      KV heads as there, FFN channels by position instead of by contribution).
    """
    for field in ("vocab_size", "hidden_size", "num_heads", "num_layers", "head_size", "tie_embeddings"):
        if getattr(parent, field) != getattr(student, field):
            raise ValueError(f"student {field}={getattr(student, field)} differs from the parent's "
                             f"{getattr(parent, field)}; slicing keeps it")
    params = {k: v for k, v in parent_params.items() if not k.startswith("layers_")}
    for layer, (p_block, c_block) in enumerate(zip(parent.blocks, student.blocks, strict=True)):
        source = parent_params.get(layer_key(layer), {})
        entry = {}
        attn = _attention(p_block, c_block, source.get("attn"), layer)
        ffn = _ffn(p_block, c_block, source.get("ffn"), layer)
        if attn is not None:
            entry["attn"] = attn
        if ffn is not None:
            entry["ffn"] = ffn
        if entry:
            params[layer_key(layer)] = entry
    check_params(student, params)
    return params
