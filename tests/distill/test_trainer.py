import jax
import numpy as np
import optax
import pytest

from lnemo.checkpoint import Checkpointer
from lnemo.distill import (
    kd_objective,
    make_distill_eval_fn,
    params_from_checkpoint,
    place_params,
    setup_distillation,
    slice_student,
)
from lnemo.sharding import make_mesh
from lnemo.train import adamw, create_train_state, fit, train_state_shardings
from tests.distill.conftest import batches


def _run(student, teacher, mesh, data, *, steps, accum_steps=1, optimizer=None):
    (s_cfg, s_params), (t_cfg, t_params) = student, teacher
    run = setup_distillation(s_cfg, t_cfg, t_params, kd_objective(s_cfg, t_cfg), optimizer or adamw(3e-3), mesh,
                             jax.random.key(0), init_params=lambda k: s_params, accum_steps=accum_steps)
    state, history = run.state, []
    for batch in data[:steps]:
        state, metrics = run.step(state, batch)
        history.append(jax.device_get(metrics))
    return run, state, history


def test_distillation_on_a_mesh_lowers_held_out_kl_and_leaves_teacher_frozen(teacher, student):
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    sliced = (student[0], slice_student(teacher[0], teacher[1], student[0]))
    teacher_before = jax.device_get(teacher[1])
    run, _, _ = _run(sliced, teacher, mesh, [], steps=0)
    held_out = batches(2, seed=99)
    eval_fn = make_distill_eval_fn(kd_objective(student[0], teacher[0], hidden_weight=0.0), run.teacher_params,
                                   held_out, batch_sharding=run.batch_sharding)
    before = eval_fn(run.state)
    state = fit(run.step, run.state, iter(batches(12)), num_steps=12, batch_sharding=run.batch_sharding,
                progress=False)
    after = eval_fn(state)
    assert after["kl"] < 0.7 * before["kl"]
    assert set(before) == {"loss", "tokens", "kl"}
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(run.teacher_params), teacher_before)
    # the teacher lives on the same mesh with the model's own parameter shardings
    leaf = run.teacher_params["layers_0"]["ffn"]["up_proj"]
    assert leaf.sharding == run.teacher_shardings["layers_0"]["ffn"]["up_proj"]
    assert leaf.sharding.mesh == mesh
    # and is not part of the optimiser state
    assert jax.tree.structure(state.params) == jax.tree.structure(student[1])


def test_sharded_and_accumulated_steps_equal_the_single_device_step(teacher, student):
    data = batches(1)
    one = make_mesh({"data": 1}, devices=jax.devices()[:1])
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    sgd = optax.sgd(0.1)  # Adam's first step would amplify rounding differences of near-zero gradients
    _, ref, ref_hist = _run(student, teacher, one, data, steps=1, optimizer=sgd)
    _, sharded, sharded_hist = _run(student, teacher, mesh, data, steps=1, accum_steps=2, optimizer=sgd)
    for a, b in zip(ref_hist, sharded_hist, strict=True):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4)
        np.testing.assert_allclose(a["kl_sum"], b["kl_sum"], rtol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), jax.device_get(ref.params),
                 jax.device_get(sharded.params))


def test_params_from_checkpoint_restores_onto_another_mesh(tmp_path, teacher):
    config, params = teacher
    optimizer = adamw(1e-3)
    mesh = make_mesh({"data": 8})
    shardings = train_state_shardings(optimizer, params, jax.tree.map(lambda x: x.sharding,
                                                                       place_params(config, params, mesh)))
    state = create_train_state(lambda k: params, optimizer, jax.random.key(0), shardings=shardings)
    with Checkpointer(tmp_path) as checkpointer:
        checkpointer.save(3, state)
    other = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    restored = params_from_checkpoint(config, str(tmp_path), optimizer, other)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored), jax.device_get(params))
    assert restored["lm_head"].sharding.mesh == other


def test_place_params_names_a_wrong_parameter(teacher, student):
    with pytest.raises(ValueError, match="layers_1"):
        place_params(teacher[0], student[1], make_mesh({"data": 8}))
