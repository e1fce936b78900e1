"""Multi-process training: 2 processes x 2 CPU devices train exactly like 1 process x 4 devices.

The processes talk through ``jax.distributed`` on a free local port (gloo collectives on CPU). Each run is a
separate Python process whose output goes to files, so a hung or failed peer cannot block the test on a
full pipe; every process still running at the end is killed.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parents[1]
TIMEOUT_S = 300  # a loaded 2-core machine compiles the tiny model's step in 10-60 s per process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_all(commands: list[list[str]], workdir: pathlib.Path, env_extra: dict[str, str] | None = None) -> list[str]:
    """Start every command at once, wait for all of them, return their stdouts; kill leftovers."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env_extra or {})}
    env.pop("XLA_FLAGS", None)
    procs, logs = [], []
    try:
        for i, command in enumerate(commands):
            out, err = workdir / f"proc{i}.out", workdir / f"proc{i}.err"
            logs.append((out, err))
            with out.open("w") as fout, err.open("w") as ferr:
                procs.append(subprocess.Popen([sys.executable, *command], env=env, stdout=fout, stderr=ferr))
        deadline = time.monotonic() + TIMEOUT_S
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, command, (out, err) in zip(procs, commands, logs, strict=True):
        assert proc.returncode == 0, f"{command} exited with {proc.returncode}:\n{err.read_text()[-3000:]}"
    return [out.read_text() for out, _ in logs]


def _result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, stdout[-2000:]
    return json.loads(lines[0][len("RESULT ") :])


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    script = str(HERE / "multiprocess_train_run.py")
    port = str(_free_port())
    single, *pair = [
        _result(out)
        for out in _run_all([[script, "1", "0", "0"], [script, "2", "0", port], [script, "2", "1", port]], tmp_path)
    ]
    assert single["local_devices"] == 4 and [r["local_devices"] for r in pair] == [2, 2]
    assert [r["process"] for r in pair] == [0, 1]
    # Each process fed only its own rows (disjoint shards), which together are the single run's batch.
    assert pair[0]["first_tokens"] + pair[1]["first_tokens"] == single["first_tokens"]
    assert pair[0]["first_tokens"] != pair[1]["first_tokens"]
    for r in pair:
        assert r["tokens"] == single["tokens"]
        # Same program, same data; only the order of the cross-process sums may differ (1 float32 ulp).
        np.testing.assert_allclose(r["loss"], single["loss"], rtol=1e-6, atol=0)
        np.testing.assert_allclose(r["grad_norm"], single["grad_norm"], rtol=1e-6, atol=0)
        np.testing.assert_allclose(r["param_square_sum"], single["param_square_sum"], rtol=1e-6, atol=0)
    assert single["loss"][-1] < single["loss"][0]


@pytest.mark.slow
def test_pretrain_example_runs_as_two_processes(tmp_path):
    out = tmp_path / "run"
    port = str(_free_port())
    flags = ["--preset", "tiny", "--steps", "4", "--batch", "8", "--seq-len", "64", "--warmup", "1",
             "--eval-every", "0", "--checkpoint-every", "0", "--eval-batches", "1", "--log-every", "2",
             "--out", str(out), "--no-progress", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]  # fmt: skip
    script = str(ROOT / "examples" / "pretrain.py")
    stdouts = _run_all([[script, *flags, "--process-id", str(i)] for i in range(2)], tmp_path,
                       env_extra={"JAX_NUM_CPU_DEVICES": "2"})  # fmt: skip
    finals = [[line for line in s.splitlines() if line.startswith("held-out loss after 4 steps")] for s in stdouts]
    assert all(len(f) == 1 for f in finals) and finals[0] == finals[1], stdouts
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [2, 4]  # written once, by process 0
    assert all(np.isfinite(r["loss"]) for r in records if "loss" in r)
    with ocp.CheckpointManager(out / "checkpoints") as manager:
        assert manager.all_steps() == [4]
        states = manager.restore(4, args=ocp.args.Composite(data=ocp.args.JsonRestore())).data["data_states"]
    assert len(states) == 2 and states[0] != states[1]  # one iterator state per process
