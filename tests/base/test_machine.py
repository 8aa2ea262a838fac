"""Machine facts: cores, the run queue, the device, bf16, resolving `auto` settings, the lease."""

import json
import os
import re
import select
import subprocess
import sys

import pytest
import torch

from conftest import HANG_S, denormals_flushed, finish, hung, read_line
from quicknets.base import machine
from quicknets.base.errors import QuicknetsError
from quicknets.base.machine import (
    POLL,
    SLOWEST_POLL,
    CoreLease,
    available_memory,
    bf16_pays,
    default_threads,
    device_name,
    flush_denormals,
    free_cores,
    native_bf16,
    native_fp16,
    pick_device,
    resolve,
    shares,
    torch_threads,
    turns,
    usable_cores,
)
from quicknets.config.configs import TrainConfig


def start_spinner() -> subprocess.Popen:
    """A process that keeps a core busy, returned once it spins (it says so), not after a time."""
    spinner = subprocess.Popen(
        [sys.executable, "-c", "print('spinning', flush=True)\nwhile True: pass"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert read_line(spinner, "spinning line") == "spinning\n"
    return spinner


def test_free_cores_counts_a_busy_neighbour_at_once():
    """A process spinning beside us takes a core away now, not once the load average catches up."""
    usable = usable_cores()
    spinner = start_spinner()
    try:
        assert 1 <= free_cores() <= max(1, usable - 1)
    finally:
        spinner.kill()
        spinner.wait()


def test_default_threads_do_not_depend_on_the_load():
    """The same command trains to the same numbers: a busy neighbour does not change the count."""
    spinner = start_spinner()
    try:
        assert default_threads() == usable_cores()
        assert resolve(TrainConfig()).threads == usable_cores()
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


NO_TORCH = (
    "import sys; from quicknets.base.machine import device_name; "
    "print(device_name({!r}), 'torch' in sys.modules)"
)


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:0", "mps", "tpu"])
def test_device_name_is_pick_devices(name, monkeypatch, tmp_path):
    """The same answer (or error) as pick_device, with GPU device files seen or not."""
    try:
        expected = str(pick_device(name))
    except QuicknetsError as e:
        with pytest.raises(QuicknetsError, match=re.escape(str(e))):
            device_name(name)
        return
    assert device_name(name) == expected
    (tmp_path / "nvidiactl").touch()  # a driver's file: only torch can say whether it works
    monkeypatch.setattr(machine, "GPU_DEVICE_FILES", (str(tmp_path / "nvidiactl"),))
    assert device_name(name) == expected


def test_the_cpu_is_named_without_torch():
    gpu_files = any(os.path.exists(f) for f in machine.GPU_DEVICE_FILES)
    for name, needs_torch in (("cpu", False), ("auto", gpu_files or sys.platform != "linux")):
        out = subprocess.run(
            [sys.executable, "-c", NO_TORCH.format(name)], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        device, imported = out.stdout.split()
        assert device == str(pick_device(name)) and imported == str(needs_torch)


def test_resolve_makes_auto_concrete_and_is_idempotent():
    cfg = resolve(TrainConfig(threads=0, device="auto"))
    assert 1 <= cfg.threads <= usable_cores() and cfg.device in ("cpu", "cuda")
    assert resolve(cfg) == cfg
    with pytest.raises(QuicknetsError, match="oversubscribes"):
        resolve(TrainConfig(threads=usable_cores() + 1))


def test_facts_have_the_right_types():
    assert isinstance(native_bf16("cpu"), bool) and native_bf16("mps") is False
    assert available_memory() > 2**20  # Linux reports MemAvailable


def test_available_memory_is_a_containers_limit_less_its_use(tmp_path, monkeypatch):
    """A cgroup's limit (a container, a batch job) bounds what MemAvailable (the host's)
    says: the limit less the use, whose inactive page cache is reclaimable; "max" (no limit)
    leaves MemAvailable."""
    from quicknets.base import machine

    host = available_memory()
    limit, used, stat = (tmp_path / n for n in ("memory.max", "memory.current", "memory.stat"))
    files = (str(limit), str(used), str(stat), "inactive_file")
    monkeypatch.setattr(machine, "CGROUP_MEMORY", (files,))
    limit.write_text(f"{2**30}\n")
    used.write_text(f"{2**28}\n")
    assert available_memory() == min(host, 2**30 - 2**28)  # no memory.stat: all of it used
    stat.write_text(f"anon 1000\ninactive_file {2**27}\nactive_file 5\n")
    assert available_memory() == min(host, 2**30 - 2**27)
    used.write_text(f"{2**31}\n")  # over the limit: no room, and known (not 0, "unknown")
    assert available_memory() == 1
    limit.write_text("max\n")
    assert abs(available_memory() - host) < 2**28  # MemAvailable moves a little meanwhile


def test_auto_picks_cuda_then_apples_mps_then_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")


@pytest.mark.parametrize(
    "words, pays",
    [
        ("vendor_id : AuthenticAMD flags : avx512f avx512_bf16", True),  # Zen 4: measured 2.3x
        ("vendor_id : GenuineIntel flags : avx512f avx512_bf16", False),  # no AMX: measured slower
        ("vendor_id : GenuineIntel flags : avx512_bf16 amx_bf16 amx_tile", True),
        ("vendor_id : AuthenticAMD flags : avx2 fma", False),  # emulated
    ],
)
def test_bf16_pays_with_amx_or_amds_avx512_bf16(words, pays):
    assert bf16_pays(words.split()) is pays


def test_fp16_facts():
    assert native_fp16("mps") is True and native_fp16("xla") is False
    assert isinstance(native_fp16("cpu"), bool)
    assert native_fp16("cuda") is torch.cuda.is_available() and (
        not torch.cuda.is_available()
        or native_fp16("cuda") == (torch.cuda.get_device_capability() >= (7, 0))
    )


@pytest.mark.parametrize(
    "holders, cores, expected",
    [
        ({1: (2, True)}, 2, {1: 2}),  # alone: every core
        ({1: (2, True), 2: (2, True)}, 2, {1: 1, 2: 1}),  # two trainings: one each
        ({1: (2, True), 2: (1, False), 3: (1, False)}, 2, {1: 1, 2: 1, 3: 1}),  # beside a sweep
        ({1: (2, True), 2: (2, False)}, 2, {1: 1, 2: 2}),  # a fixed one keeps its count
        ({1: (4, True), 2: (1, True)}, 4, {1: 3, 2: 1}),  # what one leaves, one takes
        ({1: (3, True), 2: (3, True), 3: (3, True)}, 8, {1: 2, 2: 3, 3: 3}),
    ],
)
def test_shares(holders, cores, expected):
    assert shares(holders, cores) == expected


def test_the_lease_shares_the_cores_and_forgets_the_dead(tmp_path):
    """A live holder takes its core; a dead one (or a reused pid) is dropped; leaving gives back."""
    path, cores, before = tmp_path / "lease.json", usable_cores(), torch.get_num_threads()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )  # alive until killed, however slow the test
    try:
        path.write_text(
            json.dumps(
                {
                    str(holder.pid): [1, False, machine._started(holder.pid)],
                    "999999999": [4, False, "12"],  # gone
                    str(os.getpid()): [4, False, "12"],
                }
            )
        )  # a reused pid
        with CoreLease(cores, flexible=True, path=path, load=False) as lease:
            table = json.loads(path.read_text())
            assert set(table) == {str(holder.pid), str(os.getpid())}
            assert table[str(os.getpid())][:2] == [cores, True]
            assert torch.get_num_threads() == max(1, cores - 1)
            holder.kill()
            holder.wait()
            lease.next_look = 0  # look now, not in 0.2 s
            lease.step()
            assert torch.get_num_threads() == cores
        assert json.loads(path.read_text()) == {}
    finally:
        holder.kill()
        holder.wait()
        torch.set_num_threads(before)


def test_a_fixed_holder_keeps_its_threads(tmp_path):
    path, before = tmp_path / "lease.json", torch.get_num_threads()
    try:
        with CoreLease(1, flexible=False, path=path) as lease:
            path.write_text(
                json.dumps({**json.loads(path.read_text()), "1": [8, False, machine._started(1)]})
            )
            lease.next_look = 0
            lease.step()
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_flexible_holder_also_yields_to_other_work(tmp_path, monkeypatch):
    """Other processes in the run queue (not quicknets, so not in the lease) take cores from a
    flexible holder, the median of its last looks; never below one thread."""
    before, cores = torch.get_num_threads(), usable_cores()
    queue = iter([1] + [2 * cores] * 6 + [1] * 6)  # ours alone, then others busy on all cores
    monkeypatch.setattr(machine, "runnable_now", lambda samples=1: next(queue))
    seen = []
    try:
        with CoreLease(cores, flexible=True, path=tmp_path / "lease.json") as lease:
            for _ in range(12):
                lease.next_look = 0
                lease.step()
                seen.append(torch.get_num_threads())
    finally:
        torch.set_num_threads(before)
    assert min(seen) == 1 and seen[-1] == cores


@pytest.mark.parametrize(
    "holders, cores, expected",
    [
        # no gang (fixed holder of 2+ threads): everyone runs, single threads share fairly
        ({1: (2, True, None, 1), 2: (1, False, 5.0, 0), 3: (1, False, 6.0, 0)}, 2, {1, 2, 3}),
        ({1: (1, False, None, 1), 2: (1, False, 5.0, 0), 3: (2, True, 1.0, 0)}, 2, {1, 2, 3}),
        # two gangs: the one running keeps its turn, the other waits
        ({1: (2, False, None, 2), 2: (2, False, 5.0, 0)}, 2, {1}),
        # nobody runs: the longest-waiting first, then whoever else fits
        ({1: (2, False, 7.0, 0), 2: (2, False, 5.0, 0)}, 2, {2}),
        ({1: (2, False, 5.0, 0), 2: (1, False, 6.0, 0), 3: (1, True, 7.0, 0)}, 4, {1, 2, 3}),
        # a gang beside a sweep's single-thread workers: the workers together, then the gang
        ({1: (2, False, 9.0, 0), 2: (1, False, 5.0, 0), 3: (1, False, 6.0, 0)}, 2, {2, 3}),
        ({1: (2, False, 5.0, 0), 2: (1, False, None, 1), 3: (1, False, 6.0, 0)}, 2, {2}),
        # a flexible run waits while a gang has every core, and needs one core to start
        ({1: (2, False, None, 2), 2: (2, True, 5.0, 0)}, 2, {1}),
        ({1: (2, False, 6.0, 0), 2: (2, True, 5.0, 0)}, 2, {2}),
        # more threads than cores: it runs alone, when nobody else does
        ({1: (8, False, 5.0, 0), 2: (1, False, 6.0, 0)}, 2, {1}),
        ({1: (8, False, 5.0, 0), 2: (1, False, None, 1)}, 2, {2}),
    ],
)
def test_turns(holders, cores, expected):
    assert turns(holders, cores) == expected


def lease_entry(pid: int, wanted: int, flexible: bool, waiting, threads: int, seen: float):
    return {str(pid): [wanted, flexible, machine._started(pid), waiting, threads, seen]}


def running_entry(next_look: float, seen: float = 99.9) -> list:
    return [2, False, "1", None, 2, seen, next_look]


@pytest.mark.parametrize(
    "others, waiting_since, expected",
    [
        ({"2": running_entry(100.15)}, 99.0, 0.15),  # asleep until the runner's next look
        ({"2": running_entry(100.3), "3": running_entry(100.1)}, 99.0, 0.1),  # the first one
        ({"2": running_entry(99.999)}, 99.0, POLL),  # due: a look every 2 ms
        ({"2": running_entry(99.96)}, 99.0, 0.01),  # late by 40 ms: every 10 ms
        ({"2": running_entry(99.0)}, 99.0, SLOWEST_POLL),  # a validation pass: every 20 ms
        ({"2": running_entry(100.15)[:6]}, 99.0, POLL),  # says no next look: due now
        ({"2": [2, False, "1", 98.0, 0, 98.0, 98.0]}, 99.0, POLL),  # nobody runs: one goes in
        ({"2": [2, False, "1"]}, 99.0, POLL),  # before turns: not waited for, so not slept for
        ({"2": running_entry(150.0, seen=95.0)}, 99.0, 5.0),  # the runner's stale at 105
        ({"2": running_entry(150.0)}, 91.0, 1.0),  # this one runs anyway at 101
        ({"2": running_entry(150.0, seen=80.0)}, 99.0, POLL),  # stale already
    ],
)
def test_a_waiter_sleeps_until_a_turn_may_end(others, waiting_since, expected):
    me = [2, False, "1", waiting_since, 0, waiting_since, waiting_since]
    assert machine.pause({**others, "1": me}, "1", 100.0, 10.0) == pytest.approx(expected)


def test_a_fixed_run_of_several_threads_waits_for_its_turn(tmp_path):
    """Another holder of 2 threads runs: this one waits (marked so in the file) until that one
    steps aside, or stops looking for `stale` seconds; one that has had its turn steps aside for
    a waiter. Read through the lease's own look (`_try`), one at a time: no waiting on time."""
    path = tmp_path / "lease.json"
    lease = CoreLease(2, flexible=False, path=path)
    me, other = os.getpid(), os.getppid()  # the parent: alive, and not this process

    def look(may_park=False):
        got = []
        lease._update(lambda live, key: got.append(lease._try(live, key, may_park)))
        return got[0], json.loads(path.read_text())

    now = machine.time.time()
    path.write_text(json.dumps(lease_entry(other, 2, False, None, 2, now)))
    threads, table = look()
    assert threads is None and table[str(me)][3] is not None  # waiting, and said so
    assert lease.pause == POLL  # the other says no next look: due now
    table[str(other)].append(now + 5)  # the other's next look: this one sleeps until then
    path.write_text(json.dumps(table))
    before = machine.time.time()
    threads, table = look()
    assert threads is None and now + 5 - machine.time.time() <= lease.pause <= now + 5 - before
    table[str(other)][3] = now + 1  # the other steps aside, after this one began to wait
    path.write_text(json.dumps(table))
    threads, table = look()
    assert threads == 2 and table[str(me)][3] is None and table[str(me)][4] == 2
    assert table[str(me)][6] == table[str(me)][5] + lease.interval  # says when it looks next
    table[str(other)][3] = now - 1  # the other waits again, from before this one's look
    path.write_text(json.dumps(table))
    threads, table = look(may_park=True)  # its turn had; the other waits: it steps aside
    assert threads is None and turns(lease._holders(table, now), 2) == {other}
    path.write_text(json.dumps({**table, **lease_entry(other, 2, False, None, 2, now - 60)}))
    threads, _ = look()  # the other has not looked for a minute: not counted
    assert threads == 2
    path.write_text(json.dumps({str(other): [2, False, machine._started(other)]}))
    threads, _ = look()  # a quicknets from before turns takes none: not waited for
    assert threads == 2
    path.write_text(json.dumps(lease_entry(other, 2, False, None, 2, machine.time.time())))
    lease.stale = 0.0  # this one has waited `stale` seconds: it runs anyway
    threads, _ = look()
    assert threads == 2


TURN_SCRIPT = """
import sys, time
import torch  # before the lease: a slow start (a loaded machine) is no long turn
from quicknets.base.machine import CoreLease
spans = []
# stale: the fallback for holders that stop looking is not what this test is about
with CoreLease(2, flexible=False, path=sys.argv[1], interval=0.005, stale=600) as lease:
    print("in", flush=True)
    sys.stdin.readline()  # both in: go
    for _ in range(40):
        start = time.time()
        time.sleep(0.002)  # a step, as a training runs it between looks
        spans.append((start, time.time()))
        lease.next_look = 0
        lease.step()
print(spans)
"""


def test_two_fixed_runs_never_run_at_once(tmp_path):
    """Two processes of 2 threads each, fixed (their numbers depend on their threads): their
    steps never overlap in time, on a machine of any size, and both get turns to the end."""
    path, log = tmp_path / "lease.json", tmp_path / "turns.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "QUICKNETS_TURN_LOG": str(log)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", TURN_SCRIPT, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        # either may win the lease first; the other says "in" only once it had a turn
        ready, _, _ = select.select([run.stdout for run in runs], [], [], HANG_S)
        if not ready:
            hung(runs[0], "either run's start")
        first = next(run for run in runs if run.stdout is ready[0])
        for run in (first, *[r for r in runs if r is not first]):
            assert read_line(run, "a run's start") == "in\n"
            run.stdin.write("go\n")
            run.stdin.flush()
        a, b = (eval(finish(run)[0]) for run in runs)
    finally:
        for run in runs:
            run.kill()
    assert len(a) == len(b) == 40
    assert not [(s, t) for s in a for t in b if s[0] < t[1] and t[0] < s[1]]  # no overlap
    assert json.loads(path.read_text()) == {}
    # the turn log (QUICKNETS_TURN_LOG) says the same: each process entered, left after its 40
    # steps, and the spans it ran (from entering, after its first wait, to leaving, less its
    # waits) never overlap
    lines = [line.split() for line in log.read_text().splitlines()]
    ran = {}
    for run in runs:
        mine = [w[1:] for w in lines if w[0] == str(run.pid)]
        (enter,) = [float(w[1]) for w in mine if w[0] == "enter"]
        (leave,) = [float(w[1]) for w in mine if w[0] == "exit" and w[2] == "40"]
        spans, t = [], enter
        waits = sorted((float(w[1]), float(w[2])) for w in mine if w[0] == "wait")
        for begin, end in [w for w in waits if w[1] > enter]:  # (a first one ends at enter)
            assert t <= begin <= end
            spans.append((t, begin))
            t = end
        ran[run.pid] = [*spans, (t, leave)]
    a, b = ran.values()
    assert not [(s, t) for s in a for t in b if s[0] < t[1] and t[0] < s[1]]


STRICT_SCRIPT = """
import json, sys, warnings
from quicknets.base.machine import math_mode, thread_invariant, use_strict_math
case = sys.argv[1]
if case == "at the entry":  # the CLI's way: before torch is imported
    use_strict_math()
import torch
if case == "after MKL ran":
    torch.ones(8, 8) @ torch.ones(8, 8)
with warnings.catch_warnings(record=True) as told:
    warnings.simplefilter("always")
    modes = [use_strict_math(), use_strict_math()] if case != "never" else [math_mode()]
print(json.dumps([thread_invariant(), modes, [str(w.message) for w in told]]))
"""


@pytest.mark.parametrize(
    "case, env, invariant, mode, notes",
    [
        ("at the entry", None, True, "MKL_CBWR=AUTO,STRICT", 0),
        ("in Python, before MKL ran", None, True, "MKL_CBWR=AUTO,STRICT", 0),
        ("after MKL ran", None, False, "MKL_CBWR=BRANCH_OFF", 1),  # kept, and said once
        ("never", None, False, "MKL_CBWR=BRANCH_OFF", 0),
        ("in Python, before MKL ran", "COMPATIBLE", False, "MKL_CBWR=COMPATIBLE", 0),  # the user's
        ("after MKL ran", "AUTO,STRICT", True, "MKL_CBWR=AUTO,STRICT", 0),
    ],
)
def test_one_math_mode_for_the_cli_and_python(case, env, invariant, mode, notes):
    """use_strict_math, which the CLI's entry and train() both call: MKL's strict mode wherever
    nothing chose a mode yet; a mode chosen (by MKL_CBWR, or by MKL having run) stays, and a
    process whose numbers then differ from the CLI's is told so once."""
    if not torch.backends.mkl.is_available():
        pytest.skip("the strict reproducible mode is MKL's")
    environ = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
    if env:
        environ["MKL_CBWR"] = env
    out = subprocess.run(
        [sys.executable, "-c", STRICT_SCRIPT, case],
        env=environ,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    got_invariant, modes, told = json.loads(out)
    assert got_invariant == invariant and set(modes) == {mode}
    assert len(told) == notes
    if notes:
        assert told[0].startswith(
            f"MKL already ran in this process in another math mode "
            f"({mode}), so its numbers may differ"
        )
    environ = {"MKL_CBWR": "COMPATIBLE"}
    machine.use_strict_math(environ)
    assert environ == {"MKL_CBWR": "COMPATIBLE"}  # a mode set by the user stays


FLIP_SCRIPT = """
import hashlib, sys
import torch
from torch import nn
from quicknets.config.configs import TrainConfig
from quicknets.data.loading import load_dataset
from quicknets.networks.models import network
from quicknets.training.fused import fused_step
from quicknets.training.loop import make_optimizer, train_epoch

class Flip:  # a lease gone mad: another thread count after every step
    def step(self):
        torch.set_num_threads(3 - torch.get_num_threads())

data = load_dataset("mnist", sys.argv[1], verify=False, download=False)
x, y = data.preprocessing.normalize(data.train_images), data.train_labels
fused, batchnorm = sys.argv[2] == "fused", "batchnorm" in sys.argv[2]
for lease in (None, Flip()):
    torch.set_num_threads(1)
    torch.manual_seed(0)  # dropout
    config = TrainConfig(batch_size=32, threads=1, label_smoothing=0 if fused else 0.1)
    model = network("784-300-100-10", seed=0, **({} if fused else
                                                 dict(dropout=0.2, activation="gelu",
                                                      batchnorm=batchnorm)))
    opt = make_optimizer(model, config)
    loss_fn = nn.NLLLoss() if fused else nn.CrossEntropyLoss(label_smoothing=0.1)
    step = fused_step(model, config, torch.device("cpu"))
    assert (step is not None) == fused
    sums = train_epoch(model, opt, loss_fn, x, y, 32, torch.Generator().manual_seed(0),
                       config=config, fused=step, lease=lease)
    print(sums, hashlib.sha1(b"".join(t.numpy().tobytes()
                                      for t in model.state_dict().values())).hexdigest())
"""


@pytest.mark.parametrize(
    "case", ["fused", "autograd with dropout, gelu, smoothing", "the same with batchnorm"]
)
def test_thread_free_runs_give_the_same_numbers_whatever_the_threads(tiny_dir, case):
    """What lets the lease change a flexible run's threads between steps: every step at another
    thread count, the same bits as one thread throughout (MKL's strict mode, as the CLI sets)."""
    if not torch.backends.mkl.is_available():
        pytest.skip("the strict reproducible mode is MKL's")
    env = {**os.environ, "MKL_CBWR": "AUTO,STRICT"}
    out = subprocess.run(
        [sys.executable, "-c", FLIP_SCRIPT, str(tiny_dir), case],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert len(out) == 2 and out[0] == out[1]


def test_a_garbled_lease_file_is_started_afresh(tmp_path):
    path, before = tmp_path / "lease.json", torch.get_num_threads()
    for junk in ('{"12": 3}', "[1, 2]", '{"x": [1, true, "1"]}', '{"1": ['):
        path.write_text(junk)
        try:
            with CoreLease(1, flexible=False, path=path):
                assert list(json.loads(path.read_text())) == [str(os.getpid())]
        finally:
            torch.set_num_threads(before)


def test_flush_denormals_flushes_within_and_restores_after():
    tiny = torch.finfo(torch.float32).tiny
    assert not denormals_flushed()  # torch's default: denormals kept
    assert (torch.tensor([tiny]) * 0.25).item() == pytest.approx(tiny / 4, rel=1e-6)
    with flush_denormals():
        assert denormals_flushed()
        assert (torch.tensor([tiny]) * 2.0).item() == 2 * tiny  # normal numbers: unchanged
    assert not denormals_flushed()
    with pytest.raises(ValueError), flush_denormals():  # an error inside: restored too
        raise ValueError
    assert not denormals_flushed()


def test_flush_denormals_reaches_torchs_worker_threads():
    """A large product runs on torch's worker threads (started before, at 2 threads): every
    element is flushed within, none after (torch.set_flush_denormal alone sets one thread)."""
    caller = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        (torch.randn(2_000_000) * 2).sum()  # the pool's threads exist before
        denormal = torch.full((2_000_000,), torch.finfo(torch.float32).tiny / 4)
        with flush_denormals():
            assert (denormal * 1.0 == 0).all()
        assert (denormal * 1.0 != 0).all()
    finally:
        torch.set_num_threads(caller)


@pytest.mark.parametrize("threads", [1, 2, 0])
def test_torch_threads_sets_the_count_inside_and_gives_the_caller_s_back(threads):
    """Inside: `threads` (0: the caller's); after, the caller's, after an error too."""
    import torch

    caller = torch.get_num_threads()
    for before in (1, 2):
        torch.set_num_threads(before)
        try:
            with pytest.raises(KeyError), torch_threads(threads):
                assert torch.get_num_threads() == (threads or before)
                raise KeyError
            assert torch.get_num_threads() == before
        finally:
            torch.set_num_threads(caller)
