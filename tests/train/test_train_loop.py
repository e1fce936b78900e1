import json

import jax
import numpy as np
import pytest

from lnemo.checkpoint import Checkpointer
from lnemo.sharding import batch_sharding, make_mesh, param_shardings
from lnemo.train import (
    JsonlWriter,
    TensorBoardWriter,
    adamw,
    create_train_state,
    fit,
    jit_train_step,
    make_eval_fn,
    make_train_step,
    train_state_shardings,
)

from . import tiny_mlp_lm as lm

MESH = make_mesh({"data": 4, "fsdp": 2, "tensor": 1})
TX = adamw(3e-2, weight_decay=0.0)
ABSTRACT = jax.eval_shape(lm.init, jax.random.key(0))
SHARDINGS = train_state_shardings(TX, ABSTRACT, param_shardings(ABSTRACT, lm.logical_axes(ABSTRACT), MESH))
STEP = jit_train_step(make_train_step(lm.loss_fn, TX), SHARDINGS, batch_sharding(MESH))


def _state():
    return create_train_state(lm.init, TX, jax.random.key(0), shardings=SHARDINGS)


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


class Interrupting(lm.MarkovData):
    def __init__(self, at):
        super().__init__()
        self.at = at

    def __next__(self):
        if self.index == self.at:
            raise KeyboardInterrupt
        return super().__next__()


def test_fit_logs_evaluates_checkpoints_and_learns(tmp_path):
    data = lm.MarkovData()
    held_out = lm.MarkovData(seed=99)
    eval_fn = make_eval_fn(lm.loss_fn, [next(held_out), next(held_out)], batch_sharding=batch_sharding(MESH))
    evals = []

    def logged_eval_fn(state):
        evals.append(int(state.step))
        return eval_fn(state)

    writers = [JsonlWriter(tmp_path / "log" / "metrics.jsonl"), TensorBoardWriter(tmp_path / "tb")]
    with Checkpointer(tmp_path / "ckpt", max_to_keep=2, config={"lr": 3e-2}) as ckpt:
        state = fit(
            STEP, _state(), data, num_steps=30, batch_sharding=batch_sharding(MESH), eval_fn=logged_eval_fn,
            eval_every=10, checkpointer=ckpt, checkpoint_every=12, writers=writers, log_every=5,
            flops_per_token=1e3, peak_flops=1e9, progress=False,
        )  # fmt: skip
        assert ckpt.all_steps() == [24, 30]
        assert ckpt.restore(state).data_state == {"index": 30}
    for writer in writers:
        writer.close()
    assert int(state.step) == 30 and evals == [10, 20, 30]
    records = _records(tmp_path / "log" / "metrics.jsonl")
    train = [r for r in records if "loss" in r]
    assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30]
    assert [r["step"] for r in records if "eval/loss" in r] == [10, 20, 30]
    assert all(r["tokens_per_sec"] > 0 and r["mfu"] == pytest.approx(r["tokens_per_sec"] * 1e-6) for r in train)
    assert train[-1]["loss"] < 0.6 * train[0]["loss"]
    assert records[-1]["eval/loss"] < 1.5
    assert records[-1]["eval/tokens"] == sum(int(b["mask"][:, 1:].sum()) for b in lm.MarkovData(seed=99).take(2))
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_fit_saves_on_ctrl_c_and_resumes(tmp_path):
    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(KeyboardInterrupt):
            fit(STEP, _state(), Interrupting(at=7), num_steps=20, batch_sharding=batch_sharding(MESH),
                checkpointer=ckpt, progress=False)  # fmt: skip
        assert ckpt.all_steps() == [7]
        restored = ckpt.restore(jax.eval_shape(_state))
    assert restored.data_state == {"index": 7} and int(restored.state.step) == 7
    data = lm.MarkovData()
    data.set_state(restored.data_state)
    state = fit(STEP, restored.state, data, num_steps=9, batch_sharding=batch_sharding(MESH), progress=False)
    assert int(state.step) == 9 and data.index == 9


def test_make_eval_fn_weights_batches_by_tokens():
    state = _state()
    batches = [next(lm.MarkovData(seed=s)) for s in (5, 6)]
    sharding = batch_sharding(MESH)
    per = [lm.loss_fn(state.params, jax.tree.map(np.asarray, b), None) for b in batches]
    got = make_eval_fn(lm.loss_fn, batches, batch_sharding=sharding)(state)
    want = (per[0][0] + per[1][0]) / (per[0][1]["tokens"] + per[1][1]["tokens"])
    np.testing.assert_allclose(got["loss"], want, rtol=1e-5)
    with pytest.raises(ValueError, match="batches is empty"):
        make_eval_fn(lm.loss_fn, [], batch_sharding=sharding)


def test_ctrl_c_inside_a_donating_step_saves_nothing(tmp_path):
    def interrupted(state, batch):
        STEP(state, batch)  # donates the state's buffers, then the "user" presses Ctrl-C
        raise KeyboardInterrupt

    with Checkpointer(tmp_path) as ckpt:
        with pytest.raises(KeyboardInterrupt):
            fit(interrupted, _state(), lm.MarkovData(), num_steps=5, batch_sharding=batch_sharding(MESH),
                checkpointer=ckpt, progress=False)  # fmt: skip
        assert ckpt.all_steps() == []


def test_global_batch_names_a_batch_that_does_not_divide():
    with pytest.raises(ValueError, match=r"batch\['mask'\] of local shape \(6, 9\) does not fit"):
        fit(STEP, _state(), iter([next(lm.MarkovData(batch=6))]), num_steps=1, batch_sharding=batch_sharding(MESH),
            progress=False)  # fmt: skip


def test_fit_stops_when_data_ends(tmp_path):
    data = (next(lm.MarkovData()) for _ in range(3))
    writer = JsonlWriter(tmp_path / "m.jsonl")
    state = fit(STEP, _state(), data, num_steps=10, batch_sharding=batch_sharding(MESH), writers=[writer],
                log_every=2, progress=False)  # fmt: skip
    writer.close()
    assert int(state.step) == 3
    assert [r["step"] for r in _records(tmp_path / "m.jsonl")] == [2, 3]
