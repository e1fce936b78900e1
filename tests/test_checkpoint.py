import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lnemo import checkpoint
from lnemo.checkpoint import Checkpointer
from lnemo.sharding import make_mesh, param_shardings, with_shardings
from lnemo.train import TrainState, init_train_state, train_state_shardings

ABSTRACT = {"w": jax.ShapeDtypeStruct((8, 12), jnp.float32), "norm": jax.ShapeDtypeStruct((12,), jnp.float32)}
AXES = {"w": ("embed", "mlp"), "norm": ("norm",)}
TX = optax.adam(1e-3)


def _state_on(mesh, seed=0):
    shardings = train_state_shardings(TX, ABSTRACT, param_shardings(ABSTRACT, AXES, mesh))

    def make(key):
        params = jax.tree.map(lambda a: jax.random.normal(key, a.shape, a.dtype), ABSTRACT)
        state = init_train_state(params, TX, jax.random.key(seed + 1))
        mu = jax.tree.map(lambda p: p * 0.5, params)
        return state._replace(step=jnp.int32(7), opt_state=(state.opt_state[0]._replace(mu=mu), *state.opt_state[1:]))

    state = jax.jit(make, out_shardings=shardings)(jax.random.key(seed))
    return state, shardings


def _assert_same_values(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(jax.device_get(x), jax.device_get(y)), a, b)


def test_round_trip_with_data_state_and_config(tmp_path):
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    state, shardings = _state_on(mesh)
    with Checkpointer(tmp_path / "run", config={"lr": 3e-4, "layers": [1, 2]}) as ckpt:
        ckpt.save(7, state, data_state={"index": 5, "seed": [1, 2]})
        ckpt.wait_until_finished()
        target = with_shardings(jax.eval_shape(lambda: state), shardings)
        restored = ckpt.restore(target)
    assert restored.step == 7
    assert isinstance(restored.state, TrainState)
    _assert_same_values(restored.state, state)
    assert restored.state.params["w"].sharding == shardings.params["w"]
    assert restored.data_state == {"index": 5, "seed": [1, 2]}
    assert restored.config == {"lr": 3e-4, "layers": [1, 2]}


def test_restore_onto_a_different_mesh(tmp_path):
    state, _ = _state_on(make_mesh({"data": 2, "fsdp": 4, "tensor": 1}))
    assert state.params["w"].sharding.spec == P("fsdp", None)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(7, state)
    other = make_mesh({"data": 1, "fsdp": 2, "tensor": 4})
    shardings = train_state_shardings(TX, ABSTRACT, param_shardings(ABSTRACT, AXES, other))
    with Checkpointer(tmp_path) as ckpt:
        restored = ckpt.restore(with_shardings(jax.eval_shape(lambda: state), shardings))
    _assert_same_values(restored.state, state)
    assert restored.state.params["w"].sharding.spec == P("fsdp", "tensor")
    assert restored.state.opt_state[0].mu["w"].sharding == NamedSharding(other, P("fsdp", "tensor"))
    assert restored.data_state is None and restored.config is None


def test_restore_onto_concrete_arrays_uses_their_shardings(tmp_path):
    mesh = make_mesh({"data": -1})
    state, _ = _state_on(mesh, seed=0)
    other, _ = _state_on(make_mesh({"fsdp": -1}), seed=3)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state)
        restored = ckpt.restore(other)
    _assert_same_values(restored.state, state)
    assert restored.state.params["w"].sharding == other.params["w"].sharding


def test_keeps_last_n_and_reopens_without_losing(tmp_path):
    state, _ = _state_on(make_mesh({"data": -1}))
    with Checkpointer(tmp_path, max_to_keep=2) as ckpt:
        for step in range(1, 6):
            ckpt.save(step, state, data_state={"index": step})
    with Checkpointer(tmp_path, max_to_keep=2) as ckpt:
        assert ckpt.all_steps() == [4, 5]
        assert ckpt.latest_step() == 5
        assert ckpt.restore(state, step=4).data_state == {"index": 4}


def test_refuses_to_overwrite_or_go_back(tmp_path):
    state, _ = _state_on(make_mesh({"data": -1}))
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(3, state, data_state={"index": 3})
        for step in (3, 2):
            with pytest.raises(ValueError, match=f"step {step} is not newer than the latest checkpoint 3"):
                ckpt.save(step, state, data_state={"index": -1})
        assert ckpt.restore(state).data_state == {"index": 3}


def test_clear_errors(tmp_path):
    state, _ = _state_on(make_mesh({"data": -1}))
    with Checkpointer(tmp_path / "empty") as ckpt:
        assert ckpt.latest_step() is None
        with pytest.raises(FileNotFoundError, match="no checkpoint to restore in .*empty"):
            ckpt.restore(state)
        ckpt.save(2, state)
        with pytest.raises(FileNotFoundError, match=r"step 9 not in .*available steps: \[2\]"):
            ckpt.restore(state, step=9)
        with pytest.raises(TypeError, match="data_state must be JSON-serialisable"):
            ckpt.save(3, state, data_state={"rng": np.random.default_rng(0)})
    with pytest.raises(TypeError, match="config must be JSON-serialisable"):
        Checkpointer(tmp_path / "x", config={"dtype": jnp.float32})
    with pytest.raises(ValueError, match="max_to_keep must be >= 1"):
        Checkpointer(tmp_path / "y", max_to_keep=0)


def test_restore_refuses_data_states_of_another_process_count(tmp_path, monkeypatch):
    state, _ = _state_on(make_mesh({"data": -1}))
    monkeypatch.setattr(checkpoint, "_gather_json", lambda value: [value, {"index": 99}])
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(1, state, data_state={"index": 1})
        with pytest.raises(ValueError, match="data states of 2 processes but this run has 1"):
            ckpt.restore(state)
        restored = ckpt.restore(state, ignore_data_state=True)
    assert restored.data_state is None
    _assert_same_values(restored.state, state)


@pytest.mark.slow
def test_two_processes_save_and_restore_their_own_data_states(tmp_path):
    script = pathlib.Path(__file__).parent / "train" / "multiprocess_checkpoint_run.py"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": f"{script.parents[2]}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = [
        subprocess.Popen([sys.executable, str(script), str(i), str(port), str(tmp_path / "ckpt")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    lines = [line for out, _ in outs for line in out.splitlines() if line.startswith("RESULT ")]
    results = [json.loads(line[len("RESULT ") :]) for line in lines]
    assert [r["data_state"] for r in results] == [{"process": 0, "rows": [0]}, {"process": 1, "rows": [0, 1]}]
    assert all(r["w_equal"] and r["w_sharded"] and r["config"] == {"processes": 2} for r in results)
