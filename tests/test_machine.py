"""Machine facts: cores, the run queue, the device, bf16, and resolving `auto` settings."""
import os
import subprocess
import sys
import time

import pytest
import torch

from quicknets.config import TrainConfig
from quicknets.errors import QuicknetsError
from quicknets.machine import (available_memory, free_cores, native_bf16, native_fp16,
                               pick_device, resolve, usable_cores)


def test_free_cores_counts_a_busy_neighbour_at_once():
    """A process spinning beside us takes a core away now, not once the load average catches up."""
    usable = usable_cores()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        assert 1 <= free_cores() <= max(1, usable - 1)
    finally:
        spinner.kill()
        spinner.wait()


def test_usable_cores_is_the_affinity():
    assert usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("name", ["meta", "tpu", "cuda:x", "", "cpu:0:1", "lazy"])
def test_unknown_devices_are_refused(name):
    with pytest.raises(QuicknetsError, match="unknown device|no CUDA GPU"):
        pick_device(name)


def test_devices_that_are_not_here():
    if not torch.cuda.is_available():
        with pytest.raises(QuicknetsError, match="no CUDA GPU"):
            pick_device("cuda:0")
    if not torch.backends.mps.is_available():
        with pytest.raises(QuicknetsError, match="no Apple GPU"):
            pick_device("mps")
    assert pick_device("cpu") == torch.device("cpu")


def test_resolve_makes_auto_concrete_and_is_idempotent():
    cfg = resolve(TrainConfig(threads=0, device="auto"))
    assert 1 <= cfg.threads <= usable_cores() and cfg.device in ("cpu", "cuda")
    assert resolve(cfg) == cfg
    with pytest.raises(QuicknetsError, match="oversubscribes"):
        resolve(TrainConfig(threads=usable_cores() + 1))


def test_facts_have_the_right_types():
    assert isinstance(native_bf16("cpu"), bool) and native_bf16("mps") is False
    assert available_memory() > 2 ** 20  # Linux reports MemAvailable


def test_auto_picks_cuda_then_apples_mps_then_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")


def test_fp16_facts():
    assert native_fp16("mps") is True and native_fp16("xla") is False
    assert isinstance(native_fp16("cpu"), bool)
    assert native_fp16("cuda") is torch.cuda.is_available() and (
        not torch.cuda.is_available() or native_fp16("cuda") ==
        (torch.cuda.get_device_capability() >= (7, 0)))
