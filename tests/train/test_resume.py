import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from lnemo.checkpoint import Checkpointer

SCRIPT = pathlib.Path(__file__).with_name("resume_run.py")
ROOT = SCRIPT.parents[2]


def _run(tmp_path, *args, **kwargs):
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        # The three runs compile the same programs: share them through JAX's persistent cache.
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    return subprocess.Popen([sys.executable, str(SCRIPT), *map(str, args)], env=env, **kwargs)


def _losses(path):
    return {r["step"]: r["loss"] for r in map(json.loads, path.read_text().splitlines())}


@pytest.mark.slow
def test_killed_run_resumes_bit_for_bit(tmp_path):
    assert _run(tmp_path, tmp_path / "ref", tmp_path / "ref.jsonl", 12).wait(timeout=300) == 0

    killed = _run(tmp_path, tmp_path / "run", tmp_path / "killed.jsonl", 12, 10, stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "BLOCKED"  # steps 1..10 done, checkpoints at 4 and 8
    deadline = time.monotonic() + 60
    while not (tmp_path / "run" / "8").is_dir() and time.monotonic() < deadline:
        time.sleep(0.1)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    with Checkpointer(tmp_path / "run") as ckpt:
        assert ckpt.all_steps() == [4, 8]

    assert _run(tmp_path, tmp_path / "run", tmp_path / "resumed.jsonl", 12).wait(timeout=300) == 0

    ref, before, after = (_losses(tmp_path / f"{n}.jsonl") for n in ("ref", "killed", "resumed"))
    assert sorted(ref) == list(range(1, 13))
    assert sorted(before) == list(range(1, 11)) and sorted(after) == [9, 10, 11, 12]
    assert {s: ref[s] for s in before} == before
    assert {s: ref[s] for s in after} == after  # exact float equality: bit for bit
    assert len(set(ref.values())) == 12
