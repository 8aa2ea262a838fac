"""Facts about this machine that a run depends on: cores, the device, native bf16, the default
thread count, and the lease that shares the cores between quicknets trainings. Every other
module asks here.

    threads = default_threads()          # every usable core: the same on every start
    device = pick_device("auto")         # cuda when a GPU is present, else mps (Apple), else cpu
    native_bf16("cpu")                   # AMX, or AMD's AVX-512 bf16: bf16 autocast pays
    native_fp16("cuda")                  # fp16 tensor cores: --fp16 where bf16 is missing
    train_cfg = resolve(train_cfg)       # threads=0 and device="auto" made concrete, bf16 kept
    with CoreLease(threads, flexible=True) as lease:   # in training: each step, lease.step()
    use_strict_math()                    # MKL's strict mode, the CLI's and train()'s: same bits
    with flush_denormals():              # training: denormal floats are 0 (FTZ/DAZ), fast

A run records the resolved values and its math mode (float sums depend on both), so the same
record reproduces its numbers on the same machine (another CPU may run other kernels, which
change the last bits). A run whose numbers do not depend on the thread count (an fp32 MLP,
BatchNorm1d included, with MKL's strict reproducible mode, `use_strict_math`) is `flexible`: it
gives cores up to other quicknets trainings while they run and takes them back after; any other
run keeps its thread count, the flexible ones make room for it, and where several such runs
would share cores they take turns (`turns`). torch is imported inside the
functions that need it: the CLI's help and the sweep planner stay light.
"""

import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

from quicknets.base.errors import QuicknetsError

DEVICE_TYPES = ("cpu", "cuda", "mps")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else the machine's count)."""
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    ) or 1


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
    """The thread count of `--threads 0` (auto): every core this process may use. It does not
    depend on the load, so the same command gives the same numbers; sharing the cores with
    other quicknets trainings is the lease's work (CoreLease)."""
    return usable_cores()


# The device files of the GPU drivers PyTorch can use, on Linux: NVIDIA's, AMD's (ROCm, seen
# as torch.cuda) and WSL 2's. Without any of them, no CUDA device can be seen.
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def device_name(name: str = "auto") -> str:
    """str(pick_device(name)): "cpu", "cuda", "cuda:1" or "mps", with pick_device's errors.
    Where the answer is the CPU for certain ("cpu", or "auto" on Linux with none of
    GPU_DEVICE_FILES) it comes without importing torch (~2 s of CPU): a sweep's process plans
    its stacks that way, before its workers start."""
    if name == "cpu" or (
        name == "auto"
        and sys.platform == "linux"
        and not any(os.path.exists(f) for f in GPU_DEVICE_FILES)
    ):
        return "cpu"
    return str(pick_device(name))


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
            raise QuicknetsError(
                f"device {name!r}: this machine has "
                f"{torch.cuda.device_count()} CUDA GPU(s), numbered from 0"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise QuicknetsError(f"device {name!r} asked for, but PyTorch sees no Apple GPU here")
    return device


def native_bf16(device_type: str) -> bool:
    """Whether bf16 autocast pays here (runs faster than float32): a CUDA GPU with bf16, a CPU
    with AMX, or an AMD CPU with AVX-512 bf16. Measured (benchmarks/README.md, issue 22): on an
    AMD EPYC (Zen 4, AVX-512 bf16, no AMX) bf16 trained `fast` 2.3x faster than float32; on an
    Intel Xeon with AVX-512 bf16 but no AMX (Cooper Lake, or a Sapphire Rapids whose hypervisor
    hides AMX) oneDNN's bf16 kernels are slower than MKL's float32 ones (a 256x784x512 product
    1.7x, a 3x3 convolution 1.5x, one `fast` epoch 1.4-2.4x), so there bf16 does not pay;
    without either, autocast emulates bf16."""
    if device_type == "cuda":
        import torch

        return torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    try:  # Linux names the vendor and the instruction sets in the CPU flags
        return bf16_pays(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False


def bf16_pays(cpuinfo: list) -> bool:
    """native_bf16's rule for a CPU, from the words of its /proc/cpuinfo."""
    return "amx_bf16" in cpuinfo or ("avx512_bf16" in cpuinfo and "AuthenticAMD" in cpuinfo)


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
        raise QuicknetsError(
            f"--threads {train_cfg.threads} is more than the {cores} cores "
            "this process may use: that oversubscribes them and slows "
            "training down many times"
        )
    return dataclasses.replace(
        train_cfg,
        threads=train_cfg.threads or default_threads(),
        device=device_name(train_cfg.device),
    )


# A container's memory limit, use and memory.stat (cgroup v2, then v1): MemAvailable is the
# host's. The use counts the page cache; its inactive part is reclaimable (as `docker stats`).
CGROUP_MEMORY = (
    (
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory.current",
        "/sys/fs/cgroup/memory.stat",
        "inactive_file",
    ),
    (
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        "/sys/fs/cgroup/memory/memory.stat",
        "total_inactive_file",
    ),
)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def available_memory() -> int:
    """Bytes of memory available to new allocations now, 0 if unknown: Linux's MemAvailable,
    or less where this process's cgroup (a container, a batch job) has a limit: the limit
    less what the cgroup uses beyond its reclaimable page cache (at least 1 where known)."""
    have = 0
    try:
        for line in _read("/proc/meminfo").splitlines():
            if line.startswith("MemAvailable:"):
                have = int(line.split()[1]) * 1024  # reported in kB
                break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file, stat_file, inactive in CGROUP_MEMORY:
        try:
            limit, used = _read(limit_file).strip(), int(_read(usage_file))
        except (OSError, ValueError):
            continue
        try:
            stat = dict(line.split() for line in _read(stat_file).splitlines())
            used -= int(stat.get(inactive, 0))
        except (OSError, ValueError):
            pass  # no memory.stat: the page cache counts as used
        if limit.isdigit() and int(limit) < 2**60:  # "max" (v2), or v1's huge "no limit"
            room = max(int(limit) - used, 1)
            have = min(have, room) if have else room
        break
    return have


# MKL's conditional numerical reproducibility (CBWR, mkl_service.h): a code path ("branch")
# and whether results may depend on the thread count. STRICT|AUTO: MKL's ?gemm gives the same
# bits for any thread count (Intel's "Reproducibility Conditions"), on the branch MKL picks for
# this CPU. BRANCH_OFF is what MKL runs without a mode set.
STRICT_MATH = "AUTO,STRICT"  # as the MKL_CBWR environment variable spells it
MKL_CBWR_STRICT, MKL_CBWR_AUTO = 0x10000, 2
MKL_BRANCHES = {
    0: "OFF",
    1: "BRANCH_OFF",
    2: "AUTO",
    3: "COMPATIBLE",
    4: "SSE2",
    6: "SSSE3",
    7: "SSE4_1",
    8: "SSE4_2",
    9: "AVX",
    10: "AVX2",
    11: "AVX512_MIC",
    12: "AVX512",
    13: "AVX512_MIC_E1",
    14: "AVX512_E1",
}
_mkl_lock = threading.Lock()
# Held while quicknets uses process-wide state: by a training (training.fit, lr_finder.lr_find)
# for torch's thread count, torch's global generator (dropout draws from it; torch has no
# per-thread or per-module one) and this pid's place in the core lease; by models.network
# while it draws seeded weights from that generator. Two threads that build and train at once
# in one process then take turns, each with the numbers it has alone.
TRAINING = threading.RLock()
_told_math = False  # the note that this process's numbers differ from the CLI's: said once


@contextlib.contextmanager
def flush_denormals():
    """Within it, this thread and torch's worker threads flush denormal floats (below 1.2e-38
    in float32) to zero, in and out of every operation (the CPU's FTZ and DAZ modes:
    torch.set_flush_denormal, which sets the calling thread only, then the same floating-point
    environment in each of torch's OpenMP threads); after it, the mode before it, everywhere.
    Training runs in it: Adam's first moments of weights whose inputs are nearly always zero
    (the border pixels of Fashion-MNIST) decay through the denormal range, where each operation
    on them takes a slow path of the CPU: at 1 thread the fused Adam step of the notebook's
    network took ~0.8 ms with them against ~0.2 ms without, a third of the epoch (Intel Xeon
    Sapphire Rapids, benchmarks/README.md, issue 22). The weights and accuracies stay the same
    bits where no weight falls below ~1e-31 (an update under 1e-38 is below a weight's
    rounding); the moments' denormal entries become 0. TensorFlow runs its CPU kernels so by
    default. Where torch's OpenMP is not GNU's (libgomp, Linux x86-64), only this thread
    flushes: exact at 1 thread. A CPU without these modes runs as before."""
    import torch

    before = _fp_environment()
    torch.set_flush_denormal(True)
    _in_every_thread(_fp_environment())
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        _in_every_thread(before)


@contextlib.contextmanager
def torch_threads(threads: int):
    """Within it, torch computes in `threads` threads (0: the count as it was); after it, the
    caller's count again. What a run computes after its epochs (the test pass, the familiarity
    fit) runs in the run's own threads: at torch's default (every core) a `--threads 1` run of
    `fast` took 2-4x the CPU and wall time for them on a busy 2-core machine (benchmarks/README.md,
    issue 22 part 5)."""
    import torch

    caller = torch.get_num_threads()
    if threads and threads != caller:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != caller:
            torch.set_num_threads(caller)


def _fp_environment():
    """This thread's floating-point environment (glibc's fenv_t, MXCSR included), or None."""
    import ctypes
    import platform

    if sys.platform != "linux" or platform.machine() != "x86_64":
        return None
    env = ctypes.create_string_buffer(64)  # fenv_t: 32 bytes on x86-64
    return env if ctypes.CDLL("libm.so.6").fegetenv(env) == 0 else None


def _in_every_thread(env) -> None:
    """Set `env` in this thread and in every thread of torch's OpenMP pool (a parallel region
    of libgomp in which each thread calls fesetenv); nothing where that is not available."""
    import ctypes

    import torch

    library = Path(torch.__file__).parent / "lib" / "libgomp.so.1"
    if env is None or not library.is_file():
        return
    libm = ctypes.CDLL("libm.so.6")
    gomp = ctypes.CDLL(str(library))  # the copy torch loaded: one pool
    set_env = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _: libm.fesetenv(env))
    # as many threads as this process may use: threads a lease adds later come from this one
    gomp.GOMP_parallel(set_env, None, ctypes.c_uint(max(usable_cores(), 1)), ctypes.c_uint(0))


def _mkl():
    """MKL's service functions as linked into PyTorch (libtorch_cpu), or None without MKL."""
    import ctypes

    try:
        import torch
    except ImportError:  # not installed (quicknets doctor says so): no MKL to ask
        return None
    if not torch.backends.mkl.is_available():
        return None
    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        get_mode, set_mode = lib.mkl_serv_cbwr_get, lib.mkl_serv_cbwr_set
    except (OSError, AttributeError):
        return None
    for f in (get_mode, set_mode):
        f.restype, f.argtypes = ctypes.c_int, [ctypes.c_int]
    return lib


def math_mode() -> str:
    """How this process's matrix products round, as a run records it: "MKL_CBWR=AUTO,STRICT"
    (the strict mode, the CLI's), "MKL_CBWR=BRANCH_OFF" (MKL's usual mode), another MKL_CBWR
    value a user set, or "no MKL" (PyTorch built without it: other kernels, other bits)."""
    lib = _mkl()
    if lib is None:
        return "no MKL"
    mode = lib.mkl_serv_cbwr_get(-1)  # -1: MKL_CBWR_ALL, the whole mode
    name = MKL_BRANCHES.get(mode & 0xFFFF, str(mode & 0xFFFF))
    return f"MKL_CBWR={name}{',STRICT' if mode & MKL_CBWR_STRICT else ''}"


def use_strict_math(environ=os.environ) -> str:
    """Put this process in the one math mode that quicknets runs in, MKL's strict mode
    (STRICT_MATH), where nothing chose a mode yet; return the mode it runs in (math_mode).

    Every path that trains or records numbers goes through here: the CLI at its entry, and
    train, fit, lr_find and experiment.setup in Python, so a Python call gives the CLI's bits.
    Before torch is imported it sets MKL_CBWR in `environ` (MKL reads it when it starts, child
    processes inherit it, and `quicknets --help` stays light); after, it asks MKL itself
    (mkl_cbwr_set), which works until MKL's first call. It keeps a mode that was chosen: an
    MKL_CBWR the environment sets, or the usual mode of a process where MKL already ran, which
    MKL cannot leave; then it says once (a RuntimeWarning) that the numbers may differ in
    their last digits from `quicknets train`'s, and how to avoid it.

    Why a library may set this when STYLE rule 17 says it restores what it changes: the mode
    cannot be restored, or changed at all, once MKL has run, and it is what lets a number in
    Python equal the CLI's (rule 21). It changes no thread count, generator or result type;
    on some CPUs it changes last bits (Intel: 0.8327 against 0.8324 after one epoch of
    784-32-10), which is the point: the caller's numbers become the command line's.
    """
    global _told_math
    started = sys.modules.get("torch") is not None  # None: hidden, never to be imported
    if "MKL_CBWR" in environ:  # chosen: by the user, or here at the CLI's entry
        return math_mode() if started else f"MKL_CBWR={environ['MKL_CBWR']}"
    if not started:
        environ["MKL_CBWR"] = STRICT_MATH
        return f"MKL_CBWR={STRICT_MATH}"
    lib = _mkl()
    if lib is None:
        return "no MKL"
    with _mkl_lock:
        changed = lib.mkl_serv_cbwr_set(MKL_CBWR_STRICT | MKL_CBWR_AUTO) == 0  # -8: MKL ran
        if not changed and not _told_math:
            _told_math = True
            warnings.warn(
                f"MKL already ran in this process in another math mode ({math_mode()}), so "
                f"its numbers may differ in the last digits from `quicknets train` with the "
                f"same settings; call quicknets.base.machine.use_strict_math() before anything "
                f"else runs, or set MKL_CBWR={STRICT_MATH} before starting Python",
                RuntimeWarning,
                stacklevel=3,
            )
    return math_mode()


def thread_invariant() -> bool:
    """Whether this process's matrix products give the same bits for any thread count: PyTorch
    on MKL with the strict mode on (asked of MKL itself)."""
    lib = _mkl()
    return lib is not None and bool(lib.mkl_serv_cbwr_get(-1) & MKL_CBWR_STRICT)


def shares(holders: dict, cores: int) -> dict:
    """Threads for each holder of the lease, {pid: (threads wanted, flexible)} -> {pid: threads}.
    A fixed holder keeps what it asked for; the flexible ones split the cores left, those wanting
    fewest served first, each at least 1 and at most what it wants. Pure, so every process of
    the lease computes the same division."""
    out = {pid: wanted for pid, (wanted, flexible) in holders.items() if not flexible}
    left = max(0, cores - sum(out.values()))
    flexible = sorted((wanted, pid) for pid, (wanted, f) in holders.items() if f)
    for k, (wanted, pid) in enumerate(flexible):
        out[pid] = max(1, min(wanted, left // (len(flexible) - k)))
        left = max(0, left - out[pid])
    return out


def turns(holders: dict, cores: int) -> set:
    """Which holders of the lease may run now, {pid: (wanted, flexible, waiting, threads)} ->
    {pid}; `waiting`: since when (seconds) it waits for its turn, None while it runs; `threads`:
    those it runs now. Pure, so every process of the lease computes the same answer.

    A fixed holder of 2 or more threads (a gang: its numbers depend on its thread count, so it
    cannot take fewer) runs well only with its cores to itself: its threads meet at a barrier
    after every operation, and one of them waiting for a core stalls them all (two such runs on
    2 cores took 22-49x their epoch alone). Where a gang holds or waits for the lease, the
    holders take turns: those running stay, and the waiters are let in, longest-waiting first,
    while the cores they need (a fixed holder its threads, a flexible one 1) fit beside the
    running ones; the first that does not fit stops the rest (first come, first served, so a
    gang is not starved by single threads). Without a gang, every holder runs: single threads
    share cores fairly under the OS's scheduler, and flexible holders make room (shares)."""
    if not any(wanted >= 2 and not flexible for wanted, flexible, _, _ in holders.values()):
        return set(holders)
    running = {pid for pid, (_, _, waiting, _) in holders.items() if waiting is None}
    left = cores - sum(holders[pid][3] for pid in running)
    for _, pid in sorted((h[2], pid) for pid, h in holders.items() if pid not in running):
        wanted, flexible, _, _ = holders[pid]
        need = 1 if flexible else wanted
        if need > left and (running or need <= cores):
            break  # a holder wanting more than every core runs alone
        running.add(pid)
        left -= need
    return running


POLL, SLOWEST_POLL = 0.002, 0.02  # seconds between a waiter's looks while a turn may end


def pause(live: dict, me: str, now: float, stale: float) -> float:
    """Seconds that holder `me`, waiting, sleeps before it looks at the lease table `live`
    again (now: time.time()). A running holder says when it looks next (its entry's 7th field:
    its last look + its `interval`); it steps aside at that look, or at its first optimizer
    step after it, if anyone waits. So the waiter sleeps until the first of those looks, then
    looks every POLL (2 ms) while it is due, less often (at most every SLOWEST_POLL, 20 ms) the
    later it runs (a validation pass: no steps); never past the moment a running holder stops
    counting, or `me` runs anyway (`stale` seconds). A running entry that says no next look (a
    quicknets before this field) is due now. Pure: tested without waiting.

    Polling all through a turn instead (every 2 ms) took ~0.13 ms of CPU a look, ~7% of a core,
    away from the running gang, whose 2 threads then stalled at their barriers (measured:
    benchmarks/README.md, issue 22, part 3)."""
    due, deadlines = [], []
    for pid, e in live.items():
        if len(e) > 5:  # a holder that takes turns
            if pid != me and e[3] is None:  # running
                due.append(float(e[6]) if len(e) > 6 else now)
                deadlines.append(float(e[5]) + stale)
            elif pid == me and e[3] is not None:
                deadlines.append(float(e[3]) + stale)
    first = min(due, default=now)
    wait = first - now if first > now else min(SLOWEST_POLL, max(POLL, (now - first) / 4))
    return max(POLL, min([wait, *(d - now for d in deadlines)]))


def _started(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, Linux), so that a reused pid is not
    taken for a lease holder; None if it is not running."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def lease_path() -> Path:
    """The lease file: in memory (/dev/shm) where there is one, one per user."""
    folder = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    return folder / f"quicknets-cores-{os.getuid() if hasattr(os, 'getuid') else 0}.json"


class CoreLease:
    """This process's share of the cores among the quicknets trainings on this machine: a small
    JSON file {pid: [threads wanted, flexible, start, waiting since, threads now, last look,
    next look]} under flock. Entering waits for a turn (`turns`: at once unless a fixed holder
    of several threads is about; a waiter sleeps until a running holder's next look, `pause`)
    and sets torch's threads to the share; `step()`, after each optimizer step, looks again
    every `interval` seconds: it changes a flexible holder's threads if its share changed, and
    where others wait for a turn and this one ran for `interval` seconds, it steps aside and
    waits for its next turn; leaving gives the cores back. Only a flexible holder's share
    changes (its numbers do not depend on its threads), and it also yields to other work that
    the run queue shows (`load`); a fixed holder keeps its thread count and takes turns
    instead, so its numbers stay those of its threads. A holder that has not looked for
    `stale` seconds (a long test pass, a stopped process) no longer counts as holding cores,
    and one that waited that long runs anyway (someone takes no turns); one that died is
    dropped by the next reader. Without /proc or flock (not Linux) it only sets the
    threads once."""

    def __init__(
        self,
        threads: int,
        flexible: bool,
        path=None,
        interval: float = 0.2,
        load: bool = True,
        stale: float = 10.0,
    ):
        self.wanted, self.flexible, self.interval, self.load = threads, flexible, interval, load
        self.stale = stale
        self.readings = []  # other threads in the run queue at the last looks
        # A fixed holder of several threads: how many other processes were runnable when its
        # turn began (it cannot make room for them; training tells the user so).
        self.crowded = 0
        self.waited = 0.0  # seconds spent waiting for turns
        self.path = Path(path) if path is not None else lease_path()
        self.threads, self.next_look, self.turn_began = threads, 0.0, 0.0
        self.steps = 0  # optimizer steps so far (step() calls)
        self.pause = POLL  # while waiting: seconds until the next look (`pause`)
        # QUICKNETS_TURN_LOG=FILE: each look and wait appended to FILE (benchmarks/turns.py)
        self.log = os.environ.get("QUICKNETS_TURN_LOG")
        self.active = Path("/proc").is_dir()  # holders are told apart by /proc/PID/stat

    def _update(self, change) -> None:
        """Under the lock: drop dead holders, then `change(live, me)` the table in place."""
        import fcntl

        with open(self.path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            try:
                table = json.loads(f.read() or "{}")
                live = {pid: e for pid, e in table.items() if _started(int(pid)) == e[2]}
                self._holders(live, time.time())  # each entry readable
            except (ValueError, TypeError, LookupError, AttributeError):  # torn or foreign
                table, live = None, {}
            before = json.dumps(live)
            change(live, str(os.getpid()))
            if live != table or json.dumps(live) != before:
                f.seek(0)
                f.truncate()
                f.write(json.dumps(live))

    def _holders(self, live: dict, now: float) -> dict:
        """{pid: (wanted, flexible, waiting, threads)} as `turns` reads them. An entry of the
        first form [wanted, flexible, start] (a quicknets before turns) runs, and is not
        counted as holding cores: it takes no turns, so nobody waits for it, as for other
        work; nor is one that has not looked for `stale` seconds."""
        out = {}
        for pid, e in live.items():
            waiting = None if len(e) < 4 or e[3] is None else float(e[3])
            threads = int(e[4]) if len(e) > 5 else 0
            if waiting is None and len(e) > 5 and now - float(e[5]) > self.stale:
                threads = 0
            out[int(pid)] = (int(e[0]), bool(e[1]), waiting, threads)
        return out

    def _try(self, live: dict, me: str, may_park: bool) -> int | None:
        """Under the lock: this process's threads if it may run now (marked running), else
        None (marked waiting, from when it began to). `may_park`: it has had its turn, and
        steps aside if another holder waits."""
        now = time.time()
        entry = live.get(me)
        if entry is None or len(entry) < 7:
            entry = live[me] = [self.wanted, self.flexible, _started(os.getpid()), now, 0, now, now]
        others_wait = any(len(e) > 3 and e[3] is not None for p, e in live.items() if p != me)
        set_back = entry[3] is not None and entry[3] > now  # a clock set back: wait from now
        if (may_park and others_wait) or set_back:
            entry[3] = now
        holders = self._holders(live, now)
        allowed = turns(holders, usable_cores())
        if int(me) not in allowed and now - entry[3] < self.stale:
            self.pause = pause(live, me, now, self.stale)
            return None  # (after `stale` seconds of waiting it runs: someone takes no turns)
        allowed.add(int(me))
        running = {pid: holders[pid][:2] for pid in allowed}
        n = shares(running, usable_cores()).get(int(me), self.wanted)
        entry[3], entry[4], entry[5], entry[6] = None, n, now, now + self.interval
        return n

    def _turn(self, may_park: bool) -> int:
        """This process's threads, once it may run (at once, unless it waits for a turn)."""
        start, cpu, looks, got = time.monotonic(), time.process_time(), 0, []
        while True:
            park = may_park and not looks
            self._update(lambda live, me: got.append(self._try(live, me, park)))  # noqa: B023
            looks += 1
            if got[-1] is not None:
                break
            time.sleep(self.pause)  # until a running holder may step aside (`pause`)
        if looks > 1:  # a new turn
            self.turn_began = time.monotonic()
            self.waited += self.turn_began - start
            self._note("wait", start, self.turn_began, time.process_time() - cpu, looks)
        return got[-1]

    def _note(self, *fields) -> None:
        """One line of the turn log (QUICKNETS_TURN_LOG): pid, what, times (time.monotonic,
        seconds, the same clock in every process), then counts."""
        if self.log:
            with open(self.log, "a") as f:
                f.write(" ".join(str(x) for x in (os.getpid(), *fields)) + "\n")

    def share(self, joining: bool = False) -> int:
        """This process's threads now, waiting for its turn where it must: its share of the
        lease; for a flexible holder also no more than the cores that the run queue shows free
        of other work (quicknets or not)."""
        try:
            n = self._turn(
                may_park=not joining and time.monotonic() - self.turn_began >= self.interval
            )
        except (OSError, ImportError):  # no flock here, or no place for the file
            return self.wanted
        if self.flexible and self.load:  # others runnable: the median of the last few looks
            others = runnable_now(samples=1) - self.threads  # the queue counts our threads
            self.readings = (self.readings + [max(0, others)])[-5:]
            n = max(1, min(n, usable_cores() - sorted(self.readings)[len(self.readings) // 2]))
        return n

    def _use(self, threads: int) -> None:
        import torch

        if threads != self.threads or torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
            self.threads = threads

    def __enter__(self):
        self.turn_began = time.monotonic()
        self._use(self.share(joining=True) if self.active else self.wanted)
        self._note("enter", self.turn_began)  # when it began to run: after a first wait
        self.next_look = time.monotonic() + self.interval
        if not self.flexible and self.wanted > 1 and self.load:  # see `crowded`
            self.crowded = max(0, runnable_now(samples=3, interval=0.01) - 1)
        return self

    def step(self) -> None:
        """Called after each optimizer step: a look at the lease every `interval` seconds."""
        self.steps += 1
        if self.active and time.monotonic() >= self.next_look:
            self._note("look", time.monotonic(), self.steps)
            self._use(self.share())
            self.next_look = time.monotonic() + self.interval

    def __exit__(self, *exc):
        self._note("exit", time.monotonic(), self.steps)
        if self.active:
            try:
                self._update(lambda live, me: live.pop(me, None))
            except (OSError, ImportError):
                pass
        return False
