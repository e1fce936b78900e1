"""Knowledge distillation: Puzzle's global KD objective, teacher + student training on one mesh, teacher
top-k caches for offline distillation, slicing a student from its parent, continued pretraining."""

from lnemo.distill.continued import continued_pretraining
from lnemo.distill.objective import (
    KDObjective,
    Weight,
    identity_layer_map,
    kd_objective,
    offline_kd_objective,
    weight_at,
)
from lnemo.distill.student import slice_student
from lnemo.distill.topk_cache import TopKCache, write_teacher_top_k
from lnemo.distill.trainer import (
    DistillStep,
    DistillTraining,
    make_distill_eval_fn,
    make_distill_step,
    model_param_shardings,
    params_from_checkpoint,
    place_params,
    setup_distillation,
)

__all__ = [
    "DistillStep",
    "DistillTraining",
    "KDObjective",
    "TopKCache",
    "Weight",
    "continued_pretraining",
    "identity_layer_map",
    "kd_objective",
    "make_distill_eval_fn",
    "make_distill_step",
    "model_param_shardings",
    "offline_kd_objective",
    "params_from_checkpoint",
    "place_params",
    "setup_distillation",
    "slice_student",
    "weight_at",
    "write_teacher_top_k",
]
