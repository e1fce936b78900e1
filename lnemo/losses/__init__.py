"""Token-level losses: language modelling, logit distillation, hidden-state distillation, chunked evaluation.

Every function returns the unreduced float32 per-token loss with masked tokens exactly 0; reduce with
``lnemo.utils.masked_mean``. This package imports no flax and nothing from ``lnemo.models``.
"""

from lnemo.losses.chunked import (
    chunked_cross_entropy_from_hidden,
    chunked_distill_from_hidden,
    chunked_from_hidden,
    chunked_logsumexp_from_hidden,
    chunked_loss,
    chunked_token_logprobs_from_hidden,
)
from lnemo.losses.distill import (
    forward_kl,
    generalized_jsd,
    reverse_kl,
    skew_kl,
    skew_reverse_kl,
    teacher_top_k,
    top_k_distill,
    top_k_distill_from_cache,
    total_variation,
    with_temperature,
)
from lnemo.losses.hidden import cosine_distance, layer_pairs_loss, mse, normalized_mse, project
from lnemo.losses.lm import token_cross_entropy, token_logprobs, z_loss

__all__ = [
    "chunked_cross_entropy_from_hidden",
    "chunked_distill_from_hidden",
    "chunked_from_hidden",
    "chunked_logsumexp_from_hidden",
    "chunked_loss",
    "chunked_token_logprobs_from_hidden",
    "cosine_distance",
    "forward_kl",
    "generalized_jsd",
    "layer_pairs_loss",
    "mse",
    "normalized_mse",
    "project",
    "reverse_kl",
    "skew_kl",
    "skew_reverse_kl",
    "teacher_top_k",
    "token_cross_entropy",
    "token_logprobs",
    "top_k_distill",
    "top_k_distill_from_cache",
    "total_variation",
    "with_temperature",
    "z_loss",
]
