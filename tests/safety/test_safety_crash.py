"""Fault injection, crashes and stops (harness: ``safety_harness.py``).

A crash at every checkpoint write, damaged checkpoints, SIGINT/SIGTERM (also inside a checkpoint write), ``kill -9``
of the driver, and a full disk.
"""

import errno
import glob
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safety_harness import (
    CRASH_INPUT,
    Res,
    assert_no_traceback,
    assert_same_outputs,
    copy_in,
    hashes,
    make_inputs,
    manifest_rows,
    messages,
    noisy,
    one_message,
    run_rnr,
    start_rnr,
    wait_for,
)

from agent.manifest import MANIFEST, read_manifest
from reasoner.imageio import save_image

# ----- 1. a crash right before or right after every checkpoint write

#: One attempt, whatever the scorer thinks of it: the path below is then fixed (a retry repeats plan..decide, whose
#: writes are already in the table), so a refitted scorer cannot change which writes exist.
ONE_ATTEMPT = ("--max-attempts", "1")
#: The SqliteSaver.put calls of a clean run of CRASH_INPUT (one attempt), in order: the checkpoint holds...
PUTS = (
    "input",  # 1: the thread's first checkpoint, nothing run yet
    "start",  # 2: step 0, the input applied, diagnose next
    "diagnose",  # 3: the diagnosis (input.npy on disk), retrieve next
    "retrieve",  # 4: references, plan next
    "plan",  # 5: the plan, restore next
    "restore",  # 6: the attempt's array pending, rescore next
    "rescore",  # 7: the attempt judged, decide next
    "decide",  # 8: the decision, export next
    "export",  # 9: the trace: the thread is finished
)
#: The SqliteSaver.put_writes calls: the writes of each task, saved before the checkpoint that applies them.
PUT_WRITES = ("__start__", "diagnose", "retrieve", "plan", "restore", "rescore", "decide", "export")
CRASHES = [
    (method, n, when)
    for method, steps in (("put", PUTS), ("put_writes", PUT_WRITES))
    for n in range(1, len(steps) + 1)
    for when in ("before", "after")
]


@pytest.fixture(scope="module")
def crash_runs(rnr, clean, tmp_path_factory):
    """Every crash of :data:`CRASHES` on its own --out, then ``--resume``; and the checkpoint writes of a clean run."""
    root = tmp_path_factory.mktemp("crash")
    ref = clean(make_inputs(root / "in", CRASH_INPUT), *ONE_ATTEMPT)
    inputs = hashes(root / "in")
    counts = root / "counts.json"
    counted = rnr(["restore", "in", "--out", "counted", *ONE_ATTEMPT], cwd=root, counts=counts)
    assert counted.code == 0, counted.err
    runs = {}
    for case in CRASHES:
        out = "-".join(map(str, case))
        crashed = rnr(["restore", "in", "--out", out, *ONE_ATTEMPT], cwd=root, crash=case)
        resumed = rnr(["restore", "in", "--out", out, "--resume", *ONE_ATTEMPT], cwd=root)
        runs[case] = (crashed, resumed, root / out)
    return {"ref": ref, "counts": json.loads(counts.read_text()), "counted": root / "counted", "runs": runs,
            "inputs": (root / "in", inputs)}  # fmt: skip


@pytest.mark.slow
def test_crash_table_covers_every_checkpoint_write(crash_runs):
    # A graph that grows a step must grow the table: every write of a clean run is crashed before and after.
    assert crash_runs["counts"] == {"put": len(PUTS), "put_writes": len(PUT_WRITES)}
    # The fork server's run is the real process's run (the crash cases below run in fork-server children).
    assert_same_outputs(crash_runs["counted"], crash_runs["ref"])


@pytest.mark.slow
@pytest.mark.parametrize("case", CRASHES, ids=lambda c: f"{c[2]}-{c[0]}-{c[1]}")
def test_crash_at_a_checkpoint_write_resumes_to_the_clean_outputs(crash_runs, case):
    # Before 97c36ab, a crash before put 5..8 made every resume export the unrestored input (or fail with
    # AttributeError: 'NoneType' object has no attribute 'timings').
    crashed, resumed, out = crash_runs["runs"][case]
    assert crashed.code == 137, f"the crash point was not reached: {crashed.err}"
    assert resumed.code == 0, resumed.err
    assert_no_traceback(resumed)
    assert "error" not in resumed.err, resumed.err
    assert_same_outputs(out, crash_runs["ref"])
    src, before = crash_runs["inputs"]
    assert hashes(src) == before


def _without_wal(p: Path) -> None:
    for side in ("-wal", "-shm"):
        Path(f"{p}{side}").unlink(missing_ok=True)


#: A per-image checkpoint left by a crash after the restore step's checkpoint, then damaged, and whether the resume
#: says it restarts the image (one warning naming the checkpoint). A kill -9 leaves the checkpoint's pages in
#: SQLite's write-ahead log, which SQLite reads over a damaged main file: those resume where they stopped.
CHECKPOINT_DAMAGE = {
    # random bytes over the main file, the log intact: resumes from the log
    "random bytes": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(8192)), False),
    # random bytes and no log: "file is not a database", the image restarts
    "random bytes, log gone": (lambda p: (p.write_bytes(np.random.default_rng(0).bytes(8192)), _without_wal(p)), True),
    # cut in half: a valid header over missing pages
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), False),
    # empty: SQLite reads it as a new, empty database (and drops the log): nothing to resume, nothing to say
    "empty": (lambda p: p.write_bytes(b""), False),
    # the SQLite header, then garbage
    "garbage pages": (lambda p: p.write_bytes(p.read_bytes()[:100] + np.random.default_rng(1).bytes(8192)), False),
    # a folder in its place: SQLite cannot open it
    "a folder": (lambda p: (p.unlink(), p.mkdir()), True),
    # its work arrays gone, the checkpoint intact: it points at files that are not there
    "arrays gone": (lambda p: [a.unlink() for a in p.parent.glob("*.npy")], True),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", CHECKPOINT_DAMAGE)
def test_a_damaged_checkpoint_restarts_its_image(rnr, clean, tmp_path, damage):
    src = make_inputs(tmp_path / "in", CRASH_INPUT)
    before = hashes(src)
    crashed = rnr(["restore", "in", "--out", "out"], cwd=tmp_path, crash=("put", 6, "after"))
    assert crashed.code == 137
    (checkpoint,) = (tmp_path / "out" / ".rnr" / "work").glob("*/checkpoint.sqlite")
    spoil, restarts = CHECKPOINT_DAMAGE[damage]
    spoil(checkpoint)
    res = rnr(["restore", "in", "--out", "out", "--resume"], cwd=tmp_path)
    assert res.code == 0, res.err
    assert_no_traceback(res)
    said = [m for m in messages(res.err) if "restarting it from the beginning" in m]
    if restarts:
        assert f"{checkpoint.relative_to(tmp_path)}:" in one_message(res, "restarting it from the beginning")
    else:
        assert not said, said
    assert_same_outputs(tmp_path / "out", clean(src))
    assert hashes(src) == before


# ----- 2, 3. signals and kill -9


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, code",
    [
        (signal.SIGTERM, 143),  # what a service manager or `kill` sends
        (signal.SIGINT, 130),  # Ctrl+C
    ],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_signal_mid_image_stops_with_the_resume_command(rnr, clean, three, tmp_path, sig, code):
    src = copy_in(three, tmp_path)
    before = hashes(src)
    proc = start_rnr(["restore", "in", "--out", "out"], cwd=tmp_path)
    wait_for(lambda: manifest_rows(tmp_path / "out") >= 1 or proc.poll() is not None, what="the first image")
    time.sleep(0.1)  # into image 2
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    res = Res(proc.returncode, stdout, stderr)
    assert manifest_rows(tmp_path / "out") < 3, "the run finished before the signal"
    assert res.code == code, res.err
    assert_no_traceback(res)
    (line,) = [m for m in messages(res.err) if "resume with: rnr restore" in m]
    assert line.endswith("--resume") and "interrupted" in line
    resumed = rnr(["restore", "in", "--out", "out", "--resume"], cwd=tmp_path)
    assert resumed.code == 0, resumed.err
    assert_same_outputs(tmp_path / "out", clean(src))
    assert hashes(src) == before


@pytest.mark.parametrize("n", range(1, len(PUTS) + 1), ids=PUTS)
def test_a_signal_during_a_checkpoint_write_is_a_clean_stop(rnr, clean, tmp_path, n):
    # SIGTERM arriving while LangGraph's background thread is inside SQLite writing checkpoint n. The driver used to
    # close the connection under that write as it unwound: a segfault (exit -11, no resume line; 2 of 6 Ctrl+C on
    # a real run, most of this table).
    src = make_inputs(tmp_path / "in", CRASH_INPUT)
    res = rnr(["restore", "in", "--out", "out"], cwd=tmp_path, signal_in_put=(n, signal.SIGTERM))
    assert res.code == 143, res.err
    assert_no_traceback(res)
    assert "Fatal Python error" not in res.err
    (line,) = [m for m in messages(res.err) if "resume with: rnr restore" in m]
    resumed = rnr(["restore", "in", "--out", "out", "--resume"], cwd=tmp_path)
    assert resumed.code == 0, resumed.err
    assert_same_outputs(tmp_path / "out", clean(src))


def test_a_signal_that_library_code_turns_into_another_error_still_stops_the_batch(tmp_path, monkeypatch, three):
    # An exception raised from a signal handler can land in C code that replaces it (numpy's made it "TypeError:
    # expected str, bytes or os.PathLike object, not BufferedWriter"): the image must not be recorded as failed,
    # and the batch must stop as for any SIGTERM.
    from agent.batch import Interrupted, run_batch
    from agent.worker import Worker

    src = copy_in(three, tmp_path)
    monkeypatch.chdir(tmp_path)
    real = Worker._write_preview
    calls = []

    def preview_hit_by_a_signal(self, out, name, state):
        calls.append(name)
        if len(calls) == 2:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises here
            except BaseException as e:
                raise TypeError("expected str, bytes or os.PathLike object, not BufferedWriter") from e
        return real(self, out, name, state)

    monkeypatch.setattr(Worker, "_write_preview", preview_hit_by_a_signal)
    with pytest.raises(Interrupted) as e:
        run_batch(["in"], "out")
    assert e.value.signum == signal.SIGTERM
    rows = read_manifest(tmp_path / "out")
    assert [r["status"] for r in rows.values()] == ["ok"], "the interrupted image was recorded"
    monkeypatch.setattr(Worker, "_write_preview", real)
    again = run_batch(["in"], "out", resume=True)
    assert not again.failed and len(again.skipped) == 1
    assert hashes(src) == hashes(copy_in(three, tmp_path / "pristine"))


FINALISER_RUN = """
import os, signal, sys, time
from agent.batch import interruptible

class Finalised:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler raises here, inside the finaliser

class Broken:
    def __del__(self):
        raise ValueError("a finaliser's own error")

with interruptible() as caught:
    Finalised()  # collected at once
    time.sleep(0.1)
    print("caught", caught, flush=True)
    Broken()
"""


def test_a_signal_that_lands_in_a_finaliser_prints_no_traceback():
    # Under load, Ctrl+C once landed in code the garbage collector ran ("Exception ignored in: NoiseDegradation(...)
    # Traceback ... agent.batch.Interrupted: 2"): an exception there cannot propagate, and Python printed it. The
    # signal must still be seen, nothing printed for it, and a finaliser's own error still reported.
    res = subprocess.run([sys.executable, "-c", FINALISER_RUN], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert res.returncode == 0 and "caught [2]" in res.stdout, res.stderr
    assert "Interrupted" not in res.stderr and res.stderr.count("Traceback") == 1, res.stderr
    assert "a finaliser's own error" in res.stderr


def children(pid: int) -> set[int]:
    out = set()
    for f in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            out |= {int(x) for x in Path(f).read_text().split()}
        except OSError:
            pass
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaps is dead: PID 1 in a container may never reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def processes_in(folder: Path) -> set[int]:
    """Live processes whose working folder is ``folder`` (the run's driver and every worker it forked)."""
    found = set()
    for d in glob.glob("/proc/[0-9]*"):
        try:
            if os.readlink(Path(d, "cwd")) == str(folder) and alive(int(Path(d).name)):
                found.add(int(Path(d).name))
        except OSError:
            continue
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_kill_9_of_the_driver_takes_its_workers_with_it(rnr, clean, three, tmp_path):
    src = copy_in(three, tmp_path)
    save_image(src / "3.png", noisy("chelsea", (160, 160), seed=4, top=0, left=0))
    before = hashes(src)
    out = tmp_path / "out-j2"
    proc = start_rnr(["restore", "in", "--out", out.name, "-j", "2"], cwd=tmp_path)
    work = out / ".rnr" / "work"
    wait_for(lambda: len(children(proc.pid)) >= 2 and work.is_dir() and any(work.iterdir()) or proc.poll() is not None,
             what="two workers at work")  # fmt: skip
    workers = children(proc.pid)
    assert proc.poll() is None and len(workers) >= 2, "the run finished before it could be killed"
    proc.kill()
    proc.communicate()
    wait_for(lambda: not any(alive(p) for p in workers), timeout=5, what=f"workers {workers} to die with the driver")
    assert not processes_in(tmp_path), "a process of the killed run is still running"
    resumed = rnr(["restore", "in", "--out", out.name, "-j", "2", "--resume"], cwd=tmp_path)
    assert resumed.code == 0, resumed.err
    assert_same_outputs(out, clean(src))
    assert hashes(src) == before


# ----- 4. a full disk


def can_mount_tmpfs(where: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    where.mkdir(exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True)
    if ok.returncode:
        return False
    subprocess.run(["umount", str(where)], check=True)
    return True


#: --out on a tmpfs this small (sizes from the issue), with inputs that outgrow it at different points of the run.
TMPFS = {
    # the second image's work arrays do not fit
    "2m": {
        f"{i}.png": dict(photo=p, size=(256, 256), seed=i, top=0, left=0)
        for i, p in enumerate(["astronaut", "coffee", "chelsea"])
    },
    # larger images: two fit, the third's preview does not
    "7m": {
        f"{i}.png": dict(photo=p, size=(400, 600), seed=i, top=0, left=0)
        for i, p in enumerate(["coffee", "rocket", "motorcycle_left"])
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("size", TMPFS)
def test_a_full_disk_stops_the_batch_and_resume_completes_it(rnr, clean, tmp_path, size):
    mnt = tmp_path / "mnt"
    if not can_mount_tmpfs(mnt):
        pytest.skip("needs root and tmpfs (test_enospc_at_each_write covers the same in-process)")
    src = make_inputs(tmp_path / "in", TMPFS[size])
    before = hashes(src)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True)
    try:
        res = run_rnr(["restore", "in", "--out", "mnt/out"], cwd=tmp_path)
        assert res.code == 1, res.err
        assert_no_traceback(res)
        line = one_message(res, "no space left")
        assert "mnt/out" in line and "needed" in line and line.endswith("--resume"), line
        assert manifest_rows(mnt / "out") < len(TMPFS[size]), "the batch went on"
        leftovers = [p for p in mnt.rglob("*") if p.name.endswith((".tmp", ".tmp.npy"))]
        assert not leftovers and not any((mnt / "out" / ".rnr" / "work").glob("*")), leftovers
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        resumed = rnr(["restore", "in", "--out", "mnt/out", "--resume"], cwd=tmp_path)
        assert resumed.code == 0, resumed.err
        assert_same_outputs(mnt / "out", clean(src))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    assert hashes(src) == before


def _first_row_written() -> bool:
    """Whether the first image is done (its manifest row written): faults below hit the second image's writes."""
    return manifest_rows(Path("out")) >= 1


def _fsync_enospc(pattern: str, *, tear: bool = False, anytime: bool = False):
    """An os.fsync that fails with ENOSPC for the first file whose path holds ``pattern`` (``tear``: cut it short)."""
    real, hit = os.fsync, []

    def fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if pattern in path and not hit and (anytime or _first_row_written()):
            hit.append(path)
            if tear:  # part of the line reached the disk
                os.ftruncate(fd, max(os.fstat(fd).st_size - 9, 0))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    return fsync


def _np_save_enospc():
    real = np.save

    def save(file, arr, *a, **k):
        if _first_row_written():
            Path(file).write_bytes(b"\x93NUMPY partial")  # what a full disk leaves: part of the array
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(file, arr, *a, **k)

    return save


def _sqlite_full():
    from langgraph.checkpoint.sqlite import SqliteSaver

    real = SqliteSaver.put

    def put(self, *a, **k):
        if _first_row_written():
            raise sqlite3.OperationalError("database or disk is full")
        return real(self, *a, **k)

    return put


#: Where the disk fills up (a write of the second image unless said otherwise), and how that write fails.
ENOSPC_AT = {
    # a work array: np.save leaves part of it behind
    "work array": lambda mp: mp.setattr(np, "save", _np_save_enospc()),
    # the per-image SQLite checkpoint (SQLite says it in words), in LangGraph's background thread
    "checkpoint": lambda mp: mp.setattr("langgraph.checkpoint.sqlite.SqliteSaver.put", _sqlite_full()),
    # the restored image's atomic write (its temporary sibling must go)
    "restored image": lambda mp: mp.setattr(os, "fsync", _fsync_enospc(".png.")),
    # the trace
    "trace": lambda mp: mp.setattr(os, "fsync", _fsync_enospc(".json.")),
    # the input's preview for the report
    "preview": lambda mp: mp.setattr(os, "fsync", _fsync_enospc(".jpg.")),
    # the manifest row, torn
    "manifest row": lambda mp: mp.setattr(os, "fsync", _fsync_enospc(MANIFEST, tear=True)),
    # the names handed out, before any image, torn
    "names": lambda mp: mp.setattr(os, "fsync", _fsync_enospc("names.jsonl", tear=True, anytime=True)),
}


@pytest.mark.parametrize("where", ENOSPC_AT)
def test_enospc_at_each_write(tmp_path, monkeypatch, three, clean, where):
    from agent.batch import run_batch
    from reasoner.files import DiskFullError

    src = copy_in(three, tmp_path)
    before = hashes(src)
    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as mp:
        ENOSPC_AT[where](mp)
        with pytest.raises(DiskFullError) as e:
            run_batch(["in"], "out")
    assert "no space left" in str(e.value) and "out" in str(e.value) and "\n" not in str(e.value)
    out = tmp_path / "out"
    assert len(read_manifest(out)) <= 1, "the batch went on"
    left = [p for p in out.rglob("*") if p.name.endswith((".tmp", ".tmp.npy"))] if out.exists() else []
    assert not left and not any((out / ".rnr" / "work").glob("*")), left
    run_batch(["in"], "out", resume=True)
    assert_same_outputs(out, clean(src))
    assert hashes(src) == before
