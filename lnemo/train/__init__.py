"""Training engine: state, sharded steps, optimiser presets, mixed precision, the host loop."""

from lnemo.train.evaluate import make_eval_fn
from lnemo.train.loop import fit, global_batch
from lnemo.train.metrics import JsonlWriter, MetricsWriter, TensorBoardWriter
from lnemo.train.optim import adamw, decay_mask, warmup_cosine
from lnemo.train.precision import cast_floating, with_compute_dtype
from lnemo.train.state import (
    TrainState,
    abstract_train_state,
    create_train_state,
    init_train_state,
    train_state_shardings,
)
from lnemo.train.step import SumLossFn, TrainStep, jit_train_step, make_train_step

__all__ = [
    "JsonlWriter",
    "MetricsWriter",
    "SumLossFn",
    "TensorBoardWriter",
    "TrainState",
    "TrainStep",
    "abstract_train_state",
    "adamw",
    "cast_floating",
    "create_train_state",
    "decay_mask",
    "fit",
    "global_batch",
    "init_train_state",
    "jit_train_step",
    "make_eval_fn",
    "make_train_step",
    "train_state_shardings",
    "warmup_cosine",
    "with_compute_dtype",
]
