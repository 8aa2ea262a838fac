"""Facts about this machine that a run depends on: cores, the device, native bf16, and the
default thread count. Every other module asks here.

    threads = default_threads()          # the cores not busy with other work right now
    device = pick_device("auto")         # cuda when a GPU is present, else mps (Apple), else cpu
    native_bf16("cpu")                   # AVX-512 bf16 or AMX: bf16 autocast pays
    native_fp16("cuda")                  # fp16 tensor cores: --fp16 where bf16 is missing
    train_cfg = resolve(train_cfg)       # threads=0 and device="auto" made concrete, bf16 kept

A run records the resolved values (float sums depend on the thread count), so the same record
reproduces its numbers. torch is imported inside the functions that need it: the CLI's help and
the sweep planner stay light.
"""
import dataclasses
import os
import time
from pathlib import Path

from quicknets.errors import QuicknetsError

DEVICE_TYPES = ("cpu", "cuda", "mps")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    return (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count()) or 1


def runnable_now(samples: int = 5, interval: float = 0.02) -> int:
    """Processes running or ready to run right now, this one included: the median of a few
    readings of /proc/loadavg's run queue (the 1-minute load average lags by minutes)."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]))  # "R/T": R runnable
        except (OSError, ValueError, IndexError):
            return 1 + int(os.getloadavg()[0] + 0.5) if hasattr(os, "getloadavg") else 1
        if i + 1 < samples:
            time.sleep(interval)
    return sorted(counts)[len(counts) // 2]


def free_cores() -> int:
    """Cores this process may use, less those busy with other processes' work right now."""
    usable = usable_cores()
    busy = max(0, runnable_now() - 1)  # the reading counts this process itself
    return max(1, min(usable, usable - busy))


def default_threads() -> int:
    """The thread count of `--threads 0` (auto): the free cores now, so that two PyTorch
    processes on a small machine do not oversubscribe it (they slow each other 3-100x).
    This depends on the load at the start; a run records the count it used."""
    return free_cores()


def pick_device(name: str = "auto"):
    """A torch.device from auto, cpu, cuda, cuda:N or mps; one that is not here is an error.
    auto: a CUDA GPU, else Apple's GPU (MPS), else the CPU."""
    import torch
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in DEVICE_TYPES:
        raise QuicknetsError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise QuicknetsError(f"device {name!r} asked for, but PyTorch sees no CUDA GPU here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise QuicknetsError(f"device {name!r}: this machine has "
                                 f"{torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise QuicknetsError(f"device {name!r} asked for, but PyTorch sees no Apple GPU here")
    return device


def native_bf16(device_type: str) -> bool:
    """Whether bf16 runs natively here: a CUDA GPU with bf16, or a CPU with AVX-512 bf16 or AMX
    (elsewhere autocast emulates it, slower than fp32)."""
    if device_type == "cuda":
        import torch
        return torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    try:  # Linux names the instruction sets in the CPU flags
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_fp16(device_type: str) -> bool:
    """Whether fp16 arithmetic is native here, so `--fp16` (float16 autocast with a gradient
    scaler) pays: a CUDA GPU with tensor cores (compute capability 7.0, Volta, or later), Apple's
    GPU, or a CPU with AMX-FP16. On a CUDA GPU without bf16 (before Ampere) it is the mixed
    precision to use; elsewhere prefer --bf16 where native_bf16 says so."""
    if device_type == "cuda":
        import torch
        return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (7, 0)
    if device_type == "mps":
        return True
    if device_type != "cpu":
        return False
    try:
        return "amx_fp16" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def resolve(train_cfg):
    """A TrainConfig with its `auto` choices made: threads=0 -> default_threads(),
    device=auto -> cuda, mps or cpu (lr=auto is left to experiment.setup: it needs the data).
    More threads than usable cores is an error (it oversubscribes them). Already-resolved
    configs come back unchanged."""
    cores = usable_cores()
    if train_cfg.threads > cores:
        raise QuicknetsError(f"--threads {train_cfg.threads} is more than the {cores} cores "
                             "this process may use: that oversubscribes them and slows "
                             "training down many times")
    return dataclasses.replace(train_cfg, threads=train_cfg.threads or default_threads(),
                               device=str(pick_device(train_cfg.device)))


def available_memory() -> int:
    """Bytes of memory available to new allocations now (Linux's MemAvailable), 0 if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    return 0
