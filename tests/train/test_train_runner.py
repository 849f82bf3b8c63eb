"""`lmforge train` goes through the stage runner, under torchrun too: rank 0 decides and holds the
lock, every rank follows its decision."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from lmf_train_data import free_port

from lmforge.runlock import RunLock


def torchrun_train(rd, tmp_path, max_steps: int) -> subprocess.CompletedProcess:
    config = tmp_path / "c.toml"
    config.write_text(f'name = "{rd.root.name}"\nruns_dir = "{rd.root.parent}"\n[model]\nn_layer = 1\nn_head = 2\n'
                      f'n_embd = 32\nseq_len = 32\n[train]\nmax_steps = {max_steps}\nbatch_size = 2\n'
                      'eval_batches = 1\neval_every = 0\ndevice = "cpu"\nthreads = 1\n')
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", "-m", "lmforge", "train", str(config)]
    return subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=180)


def steps(rd) -> list[int]:
    return [r["step"] for r in map(json.loads, rd.metrics.read_text().splitlines()) if r["kind"] == "train"]


@pytest.mark.slow
def test_torchrun_skips_a_complete_training_and_continues_with_more_steps(token_run, tmp_path):
    done = torchrun_train(token_run, tmp_path, 2)
    assert done.returncode == 0, done.stderr[-2000:]
    again = torchrun_train(token_run, tmp_path, 2)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("[train] complete, skipped") == 1 and steps(token_run) == [1, 2]
    more = torchrun_train(token_run, tmp_path, 4)
    assert more.returncode == 0, more.stderr[-2000:]
    assert "train.max_steps 2 -> 4; resuming train" in more.stdout and steps(token_run) == [1, 2, 3, 4]
    assert token_run.read_record("train")["settings"]["train.max_steps"] == 4


@pytest.mark.slow
def test_torchrun_on_a_run_in_use_stops_every_rank(token_run, tmp_path):
    with RunLock(token_run.root):
        done = torchrun_train(token_run, tmp_path, 2)
    assert done.returncode != 0
    assert f"is in use by PID {os.getpid()}" in done.stderr and not token_run.metrics.exists()
