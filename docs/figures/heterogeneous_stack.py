"""Draws docs/img/heterogeneous_stack.png: the per-layer blocks of the quickstart's child model."""

import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "examples"))
from quickstart import child_of  # noqa: E402

from lnemo.models import ModelConfig, cost  # noqa: E402

parent = ModelConfig.small()
child = child_of(parent)
fig, ax = plt.subplots(figsize=(8, 4.2))
colors = {"gqa": "#4c72b0", "linear": "#dd8452", "none": "#dddddd", "swiglu": "#55a868"}
for col, (name, cfg) in enumerate((("parent", parent), ("child", child))):
    x0 = col * 4.2
    ax.text(x0 + 1.8, cfg.num_layers + 0.3, name, ha="center", fontsize=12, weight="bold")
    for i, block in enumerate(cfg.blocks):
        att, ffn = block.attention, block.ffn
        att_w = 1.6 * (att.num_kv_heads / parent.blocks[0].attention.num_kv_heads if att.kind == "gqa" else
                       0.35 if att.kind == "linear" else 0.0)
        ffn_w = 1.8 * ffn.intermediate_size / parent.blocks[0].ffn.intermediate_size if ffn.kind == "swiglu" else 0.3
        ax.add_patch(plt.Rectangle((x0, i + 0.1), max(att_w, 0.05), 0.8,
                                   color=colors[att.kind] if att.kind != "none" else "white", ec="black", lw=0.5))
        ax.add_patch(plt.Rectangle((x0 + 1.8, i + 0.1), ffn_w, 0.8, color=colors.get(ffn.kind, "#c44e52"),
                                   ec="black", lw=0.5))
        ax.text(x0 - 0.15, i + 0.5, f"{i}", ha="right", va="center", fontsize=8)
        ax.text(x0 + 3.75, i + 0.5, block.describe(), ha="left", va="center", fontsize=6.5) if col == 1 else None
ax.set_xlim(-0.6, 10.2)
ax.set_ylim(-0.3, parent.num_layers + 1)
ax.axis("off")
ax.set_title("Attention (left: width ~ KV heads; orange = linear; empty = removed) | FFN (right: width ~ I)",
             fontsize=8)
out = pathlib.Path(__file__).resolve().parents[1] / "img" / "heterogeneous_stack.png"
fig.savefig(out, dpi=130, bbox_inches="tight")
print(out)
