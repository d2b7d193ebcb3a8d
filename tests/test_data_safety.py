"""Fault injection for the promises of batch restoration (see the docstring of ``agent/batch.py``), table-driven.

SQLite's test suite is the model: each case breaks one thing (a crash before or after a checkpoint write, a signal,
``kill -9``, a full disk, a hostile or corrupt file the project reads back, a FIFO, a second run on the same folder)
and asserts what a user checks: the inputs' SHA-256 unchanged, outputs byte-identical to a clean run's, one line
naming the file, no traceback, the exit code.

Command lines run as real ``rnr`` processes where the process itself is under test (signals, ``kill -9``, a second
writer, a full disk), and otherwise through a fork server (written to a temporary folder) that imports the package
once and runs each command line in a forked child: a separate process with its own exit code, stdout and stderr, in
a fraction of a second instead of the ~3 s of imports a fresh ``rnr`` pays.
"""

import errno
import glob
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from agent.manifest import MANIFEST, read_manifest
from agent.trace import Trace
from reasoner.imageio import save_image
from rl.photos import load_photo

RNR = Path(sys.executable).with_name("rnr")
#: COLUMNS: rich wraps what is not soft-wrapped at the console width; a wide one keeps a message on one line however
#: long the temporary paths in it are.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "250"}
#: Trace and manifest fields that hold clock readings: the only ones allowed to differ between two runs.
CLOCK_KEYS = frozenset({"timings", "created_at", "elapsed_s", "seconds"})

SERVER = r'''
"""Runs rnr command lines read from stdin (one JSON object a line) in forked children; answers one JSON line each."""

import json
import os
import sys
import threading
import time
import traceback

import agent.batch, agent.cli, agent.graph, agent.run, agent.ui.report, agent.worker  # noqa: E401,F401 - imported once
import reasoner.measure, restorer.classical  # noqa: E401,F401
from langgraph.checkpoint.sqlite import SqliteSaver


def crash_at(method, n, when, counts_file):
    """Count SqliteSaver.put/put_writes calls; die like kill -9 right before or after call ``n`` of ``method``."""
    counts, lock = {"put": 0, "put_writes": 0}, threading.Lock()
    for name in counts:
        orig = getattr(SqliteSaver, name)

        def patched(self, *a, _name=name, _orig=orig, **k):
            with lock:
                counts[_name] += 1
                hit = _name == method and counts[_name] == n
            if hit and when == "before":
                os._exit(137)
            result = _orig(self, *a, **k)
            if hit and when == "after":
                os._exit(137)
            return result

        setattr(SqliteSaver, name, patched)
    if counts_file:
        import atexit

        atexit.register(lambda: open(counts_file, "w").write(json.dumps(counts)))


def signal_in_put(n, signum):
    """Put ``n`` sends ``signum`` to this process from inside SQLite (a progress handler), then keeps SQLite busy:
    the driver's interrupt unwinds while LangGraph's background thread is mid-write."""
    orig, calls = SqliteSaver.put, []

    def put(self, *a, **k):
        calls.append(1)
        if len(calls) == n:
            sent = []

            def busy():
                if not sent:
                    time.sleep(0.3)  # the driver reaches whatever waits for this write
                    os.kill(os.getpid(), signum)
                if len(sent) < 20:  # about a second: the driver unwinds meanwhile
                    sent.append(time.sleep(0.05))
                return 0

            self.conn.set_progress_handler(busy, 1)
        return orig(self, *a, **k)

    SqliteSaver.put = put


def spy_opens(spy_file):
    """Record every path this process opens (audit event "open": builtins.open, io.open, os.open)."""
    import atexit

    seen = set()

    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            seen.add(os.fsdecode(args[0]))

    sys.addaudithook(hook)
    atexit.register(lambda: open(spy_file, "w").write(json.dumps(sorted(seen))))


def child(case):
    os.chdir(case["cwd"])
    for fd, name, flags in ((0, os.devnull, os.O_RDONLY), (1, case["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, case["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        os.dup2(os.open(name, flags, 0o644), fd)
    crash = case.get("crash") or {}
    if crash or case.get("counts"):
        crash_at(crash.get("method"), crash.get("n"), crash.get("when"), case.get("counts"))
    if case.get("spy"):
        spy_opens(case["spy"])
    if case.get("signal_in_put"):
        signal_in_put(*case["signal_in_put"])
    sys.argv = ["rnr", *case["argv"]]
    code = 0
    try:
        agent.cli.app()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


for line in sys.stdin:
    case = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            child(case)
        finally:
            os._exit(99)
    deadline, status = time.monotonic() + case["timeout"], None
    while status is None:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
        elif time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            status = "timeout"
        else:
            time.sleep(0.005)
    code = None if status == "timeout" else os.waitstatus_to_exitcode(status)
    sys.stdout.write(json.dumps({"code": code}) + "\n")
    sys.stdout.flush()
'''


# ----- running rnr


@dataclass
class Res:
    """What a user sees of one command: the exit code (None: killed after the timeout), stdout, stderr."""

    code: int | None
    out: str
    err: str


class ForkServer:
    """``rnr(argv, cwd)`` runs one command line in a forked child of a process that imported the package once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        script = folder / "rnr_fork_server.py"
        script.write_text(SERVER)
        self.proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=ENV, cwd=folder)  # fmt: skip

    def __call__(self, argv, cwd: Path, *, crash=None, counts=None, spy=None, signal_in_put=None, timeout=60) -> Res:
        out, err = self.folder / "stdout", self.folder / "stderr"
        case = {"argv": [str(a) for a in argv], "cwd": str(cwd), "stdout": str(out), "stderr": str(err),
                "timeout": timeout, "crash": dict(zip(("method", "n", "when"), crash, strict=True)) if crash else None,
                "counts": str(counts) if counts else None, "spy": str(spy) if spy else None,
                "signal_in_put": signal_in_put}  # fmt: skip
        self.proc.stdin.write(json.dumps(case) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        return Res(answer["code"], out.read_text(errors="replace"), err.read_text(errors="replace"))

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def run_rnr(argv, cwd: Path, timeout: float = 120) -> Res:
    """One real ``rnr`` process."""
    try:
        p = subprocess.run([RNR, *map(str, argv)], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"rnr {' '.join(map(str, argv))} did not finish in {timeout} s (blocked?)")
    return Res(p.returncode, p.stdout, p.stderr)


def start_rnr(argv, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([RNR, *map(str, argv)], cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


@pytest.fixture(scope="module")
def rnr(tmp_path_factory):
    server = ForkServer(tmp_path_factory.mktemp("fork-server"))
    yield server
    server.close()


# ----- inputs and what a user compares


def noisy(photo: str = "astronaut", size: tuple[int, int] = (96, 96), seed: int = 1, top: int = 96, left: int = 128):
    """A crop of a bundled photo with seeded Gaussian noise (sigma 25 on the 0-255 scale): float32 HxWx3 in [0, 1]."""
    h, w = size
    img = load_photo(photo)[top : top + h, left : left + w]
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, 25 / 255, img.shape), 0, 1).astype(np.float32)


#: Inputs by file name: the one the crash table restores, and small batches for the rest.
CRASH_INPUT = {"a.png": dict(photo="astronaut")}
THREE = {
    "0.png": dict(photo="astronaut", size=(160, 160), seed=1),
    "1.png": dict(photo="coffee", size=(160, 160), seed=2),
    "2.png": dict(photo="camera", size=(160, 160), seed=3, top=0, left=0),
}


def make_inputs(folder: Path, spec: dict[str, dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, kw in spec.items():
        save_image(folder / name, noisy(**kw))
    return folder


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every regular file under ``folder`` (lstat: a FIFO or a link out is listed, never opened)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        kind = os.lstat(p).st_mode
        out[p.relative_to(folder).as_posix()] = sha(p) if p.is_file() and not p.is_symlink() else oct(kind)
    return out


def scrub(x):
    """``x`` without clock readings (see :data:`CLOCK_KEYS`)."""
    if isinstance(x, dict):
        return {k: scrub(v) for k, v in x.items() if k not in CLOCK_KEYS}
    if isinstance(x, list):
        return [scrub(v) for v in x]
    return x


def results(out: Path, *, by: str = "name") -> dict[str, dict]:
    """Each finished input's restored image, preview and trace (clock fields removed), keyed by name or input."""
    res = {}
    for name, row in read_manifest(out).items():
        entry = {"status": row["status"], "name": name, "error": row.get("error")}
        if row["status"] != "failed":
            entry["png"] = sha(out / row["output"])
            entry["preview"] = sha(out / ".rnr" / "previews" / f"{name}.jpg")
            entry["trace"] = scrub(json.loads((out / row["trace"]).read_text()))
            entry["row"] = scrub({k: v for k, v in row.items() if k != "input_abs"})
        res[row["input"] if by == "input" else name] = entry
    return res


def assert_same_outputs(out: Path, ref: Path) -> None:
    """``out`` holds what the clean run ``ref`` wrote: byte-identical images and previews, equal traces and rows."""
    got, want = results(out), results(ref)
    assert sorted(got) == sorted(want), "different inputs finished"
    for name in want:
        for key in ("status", "png", "preview", "trace", "row"):
            assert got[name].get(key) == want[name].get(key), f"{name}: {key} differs from the clean run's"
    assert_tidy(out)


def assert_tidy(out: Path) -> None:
    """One manifest row per input, no temporary files, no work folder left once every image is done."""
    names = []
    for line in (out / MANIFEST).read_bytes().splitlines():
        try:
            names.append(json.loads(line)["name"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn line (a full disk): warned about and skipped on every read
    assert len(names) == len(set(names)), f"duplicate manifest rows: {names}"
    left = [p for p in out.rglob("*") if p.name.endswith((".tmp", ".tmp.npy")) or "-journal" in p.name]
    assert not left, f"temporary files left: {left}"
    work = out / ".rnr" / "work"
    assert not work.exists() or not any(work.iterdir()), f"work folders left: {list(work.iterdir())}"


def messages(stderr: str) -> list[str]:
    """Stderr as messages: one per line, rich's error panel unboxed into the one message it holds."""
    out, box = [], None
    for line in stderr.splitlines():
        s = line.strip()
        if s.startswith("╭"):
            box = []
        elif s.startswith("╰") and box is not None:
            out.append(" ".join(box))
            box = None
        elif box is not None:
            box.append(s.strip("│ "))
        elif s:
            out.append(s)
    return out


def one_message(res: Res, needle: str) -> str:
    """The one message on stderr naming ``needle`` (a run's closing summary may repeat it word for word)."""
    found = {m.removeprefix("error: ").removeprefix("warning: ") for m in messages(res.err) if needle in m}
    assert len(found) == 1, f"expected one message naming {needle!r}, got {found or 'none'}:\n{res.err}"
    return found.pop()


def assert_no_traceback(res: Res) -> None:
    assert "Traceback" not in res.err + res.out, res.err


class CleanRuns:
    """Uninterrupted ``rnr restore in --out out`` runs of input sets, each done once, in real processes."""

    def __init__(self, root: Path) -> None:
        self.root, self.cache = root, {}

    def __call__(self, src: Path, *args: str) -> Path:
        key = (tuple(hashes(src).items()), args)
        if key not in self.cache:
            d = self.root / f"ref{len(self.cache)}"
            shutil.copytree(src, d / "in", symlinks=True)
            res = run_rnr(["restore", "in", "--out", "out", *args], cwd=d)
            assert res.code in (0, 1), res.err
            self.cache[key] = d / "out"
        return self.cache[key]


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> CleanRuns:
    return CleanRuns(tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> Path:
    """Three 160x160 inputs, written once; tests copy them to ``<tmp>/in``."""
    return make_inputs(tmp_path_factory.mktemp("three") / "in", THREE)


def copy_in(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest / "in")
    return dest / "in"


# ----- 1. a crash right before or right after every checkpoint write

#: The SqliteSaver.put calls of a clean run of CRASH_INPUT (one attempt, accepted), in order: the checkpoint holds...
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
    ref = clean(make_inputs(root / "in", CRASH_INPUT))
    inputs = hashes(root / "in")
    counts = root / "counts.json"
    counted = rnr(["restore", "in", "--out", "counted"], cwd=root, counts=counts)
    assert counted.code == 0, counted.err
    runs = {}
    for case in CRASHES:
        out = "-".join(map(str, case))
        crashed = rnr(["restore", "in", "--out", out], cwd=root, crash=case)
        resumed = rnr(["restore", "in", "--out", out, "--resume"], cwd=root)
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


def wait_for(cond, timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def manifest_rows(out: Path) -> int:
    try:
        return sum(1 for line in (out / MANIFEST).read_bytes().split(b"\n") if line.strip())
    except OSError:
        return 0


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


# ----- 5. corrupt and hostile files the project reads back


def _row(**kw) -> bytes:
    base = {"input": "in/0.png", "name": "0", "output": "0.png", "trace": "0.json", "status": "ok"}
    return json.dumps({**base, **kw}, ensure_ascii=False).encode()


#: Bad manifest lines, each inserted after the first good row, and the reason the warning gives.
BAD_MANIFEST_LINES = {
    "empty object": (b"{}", "not a manifest row"),
    "a number": (b"123", "not a manifest row"),
    "a list": (b"[]", "not a manifest row"),
    "a string": (b'"x"', "not a manifest row"),
    "null": (b"null", "not a manifest row"),
    "name with ..": (_row(name="../evil"), "not a plain file name"),
    "absolute name": (_row(name="/etc/passwd"), "not a plain file name"),
    "output outside": (_row(output="../../x.png"), "not a plain file name"),
    "trace outside": (_row(trace="/etc/passwd"), "not a plain file name"),
    "hidden name": (_row(name=".rnr"), "not a plain file name"),
    "unknown status": (_row(status="weird"), "not a manifest row"),
    "torn JSON": (_row()[:-15], "not JSON"),
    "torn inside a UTF-8 character": (_row(name="東京")[: _row(name="東京").index("東".encode()) + 1], "not UTF-8"),
    "invalid UTF-8": (b'{"input": "\xff\xfe", "name": "q"}', "not UTF-8"),
}


@pytest.fixture(scope="module")
def bad_manifest(rnr, clean, three, tmp_path_factory):
    """A finished run whose manifest holds every bad line, then `restore --resume` and `report` on it."""
    root = tmp_path_factory.mktemp("bad-manifest")
    src = copy_in(three, root)
    assert rnr(["restore", "in", "--out", "out"], cwd=root).code == 0
    rows = (root / "out" / MANIFEST).read_bytes().splitlines()
    lines = [rows[0], *(bad for bad, _ in BAD_MANIFEST_LINES.values()), *rows[1:]]
    (root / "out" / MANIFEST).write_bytes(b"\n".join(lines) + b"\n")
    (root / "out" / "2.png").unlink()  # one image to redo, so the run goes on with real work
    line_of = {case: n for n, case in enumerate(BAD_MANIFEST_LINES, start=2)}
    resumed = rnr(["restore", "in", "--out", "out", "--resume"], cwd=root)
    report = rnr(["report", "out"], cwd=root)
    return {"root": root, "src": src, "resumed": resumed, "report": report, "line_of": line_of, "ref": clean(src)}


@pytest.mark.parametrize("case", BAD_MANIFEST_LINES)
def test_a_bad_manifest_line_is_one_warning_and_the_run_goes_on(bad_manifest, case):
    n, why = bad_manifest["line_of"][case], BAD_MANIFEST_LINES[case][1]
    resumed, report = bad_manifest["resumed"], bad_manifest["report"]
    where = f"out/{MANIFEST}: line {n}:"
    assert why in one_message(resumed, where)
    assert why in one_message(report, where), "rnr report did not warn about the line"
    assert resumed.code == 0 and report.code == 0, resumed.err + report.err
    assert_no_traceback(resumed)
    assert_no_traceback(report)
    html = (bad_manifest["root"] / "out" / "report.html").read_text()
    assert html.count(f"{MANIFEST}: line {n}: ") == 1, "the report's notes do not name the line"


def test_a_run_with_bad_manifest_lines_ends_with_the_clean_outputs(bad_manifest):
    assert "resuming: 2 of 3" in bad_manifest["resumed"].err
    out, ref = bad_manifest["root"] / "out", bad_manifest["ref"]
    got, want = results(out), results(ref)
    assert sorted(got) == sorted(want) == ["0", "1", "2"]
    for name in want:
        assert got[name]["png"] == want[name]["png"] and got[name]["trace"] == want[name]["trace"]


#: Lines of .rnr/names.jsonl (names handed out), each skipped with one warning naming the file and the line.
BAD_NAME_LINES = {
    "garbage": b"garbage",
    "empty object": b"{}",
    "a list": b"[1, 2]",
    "name with a separator": b'{"input_abs": "/x/y.png", "name": "../evil"}',
    "hidden name": b'{"input_abs": "/x/y.png", "name": ".rnr"}',
    "input not a string": b'{"input_abs": 5, "name": "five"}',
    "invalid UTF-8": b'{"input_abs": "\xff", "name": "q"}',
    "torn": b'{"input_abs": "/x/y.p',
}


@pytest.mark.slow
def test_bad_names_lines_are_warned_and_skipped(rnr, clean, three, tmp_path):
    src = copy_in(three, tmp_path)
    crashed = rnr(["restore", "in", "--out", "out"], cwd=tmp_path, crash=("put", 3, "after"))
    assert crashed.code == 137
    names = tmp_path / "out" / ".rnr" / "names.jsonl"
    good = names.read_bytes().splitlines()
    names.write_bytes(b"\n".join([*BAD_NAME_LINES.values(), *good]))  # the last line torn-less but unterminated
    res = rnr(["restore", "in", "--out", "out", "--resume"], cwd=tmp_path)
    assert res.code == 0, res.err
    assert_no_traceback(res)
    for n, case in enumerate(BAD_NAME_LINES, start=1):
        assert "not a name record" in one_message(res, f"names.jsonl: line {n}:"), case
    assert_same_outputs(tmp_path / "out", clean(src))


def test_a_name_claimed_for_two_inputs_is_given_to_one(tmp_path, three, clean):
    # A hostile or damaged names.jsonl (or manifest) giving input 1 the name input 0 already has: two inputs must
    # never share a name, or one's outputs would replace the other's.
    from agent.batch import run_batch

    src = copy_in(three, tmp_path)
    out = tmp_path / "out"
    (out / ".rnr").mkdir(parents=True)
    for n in ("0", "1"):
        line = {"input_abs": os.path.abspath(src / f"{n}.png"), "name": "0"}
        with open(out / ".rnr" / "names.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
    summary = run_batch([src], out, resume=True)
    names = sorted(r["name"] for r in summary.done)
    assert len(names) == 3 and len(set(names)) == 3, names
    got = results(out, by="input")
    want = {Path(k).name: v for k, v in results(clean(src), by="input").items()}
    for inp, entry in got.items():
        assert entry["png"] == want[Path(inp).name]["png"], f"{inp}: another input's image"


#: Contents of .rnr/lock left behind with no process holding it: none may block a --resume.
STALE_LOCKS = {
    "a dead pid": json.dumps({"pid": 2**22 + 12345, "started": "2020-01-01 00:00:00"}).encode(),
    "garbage": b"\x00\xffnot json at all",
    "a JSON list": b"[1, 2, 3]",
    "empty": b"",
    "huge": b"x" * 200_000,
}


@pytest.mark.parametrize("content", STALE_LOCKS)
def test_a_stale_lock_does_not_block_a_resume(rnr, clean, tmp_path, content):
    src = make_inputs(tmp_path / "in", CRASH_INPUT)
    crashed = rnr(["restore", "in", "--out", "out"], cwd=tmp_path, crash=("put_writes", 4, "after"))
    assert crashed.code == 137
    (tmp_path / "out" / ".rnr" / "lock").write_bytes(STALE_LOCKS[content])
    res = rnr(["restore", "in", "--out", "out", "--resume"], cwd=tmp_path)
    assert res.code == 0, res.err
    assert_no_traceback(res)
    assert_same_outputs(tmp_path / "out", clean(src))


#: A trace damaged after the run: `rnr report` notes it in the page and reports the rest.
BAD_TRACES = {
    "garbage": b"\x00garbage",
    "truncated": None,  # the first half of the real one
    "empty": b"",
    "JSON of another shape": b'{"schema_name": "rnr.restore_trace"}',
    "a newer major version": None,  # the real one with version 9.0.0
    "invalid UTF-8": b'{"input": "\xff"}',
}


@pytest.fixture(scope="module")
def finished_run(rnr, three, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    copy_in(three, root)
    assert rnr(["restore", "in", "--out", "out"], cwd=root).code == 0
    return root / "out"


@pytest.mark.parametrize("damage", BAD_TRACES)
def test_a_damaged_trace_is_a_note_in_the_report(rnr, finished_run, tmp_path, damage):
    out = tmp_path / "out"
    shutil.copytree(finished_run, out, symlinks=True)
    real = (out / "1.json").read_bytes()
    bad = BAD_TRACES[damage]
    if damage == "truncated":
        bad = real[: len(real) // 2]
    elif damage == "a newer major version":
        bad = real.replace(b'"version": "1.', b'"version": "9.', 1)
    (out / "1.json").write_bytes(bad)
    res = rnr(["report", "out"], cwd=tmp_path)
    assert res.code == 0, res.err
    assert_no_traceback(res)
    assert "unreadable trace, skipped" in one_message(res, "1.json:")
    html = (out / "report.html").read_text()
    assert html.count("1.json: unreadable trace, skipped") == 1
    assert html.count('alt="after"') == 3, "an image is missing from the report"


def _plant_outside(run: Path, outside: Path) -> None:
    """Links and FIFOs inside ``run`` under the names the report reads: outputs, traces, previews."""
    outside.mkdir()
    save_image(outside / "secret.png", noisy("chelsea", (64, 64), seed=9, top=0, left=0))
    shutil.copy(run / "0.json", outside / "secret.json")
    save_image(outside / "secret.jpg", noisy("chelsea", (64, 64), seed=9, top=0, left=0))
    for name in ("0.png", "0.json", ".rnr/previews/0.jpg"):  # image 0: every file a link out of the folder
        (run / name).unlink()
        (run / name).symlink_to(outside / f"secret{Path(name).suffix}")
    for name in ("1.png", "1.json", ".rnr/previews/1.jpg"):  # image 1: every file a FIFO
        (run / name).unlink()
        os.mkfifo(run / name)
    with open(run / MANIFEST, "ab") as f:  # rows naming files outside, by path
        f.write(_row(name="2", output="../outside/secret.png", trace="../outside/secret.json") + b"\n")
        f.write(_row(name="x", output=str(outside / "secret.png")) + b"\n")


#: Run folders whose files lead outside; `rnr report` reads nothing outside, never blocks, and says what is missing.
HOSTILE_RUNS = {
    # links out, FIFOs, rows naming outside files
    "manifest": lambda run, outside: _plant_outside(run, outside),
    # the same, the manifest gone: the report falls back to the traces it finds
    "no manifest": lambda run, outside: (_plant_outside(run, outside), (run / MANIFEST).unlink()),
    # the previews folder itself a link out
    "previews folder": lambda run, outside: (
        shutil.copytree(run / ".rnr" / "previews", outside),
        shutil.rmtree(run / ".rnr" / "previews"),
        (run / ".rnr" / "previews").symlink_to(outside, target_is_directory=True),
    ),
}


@pytest.mark.parametrize("hostile", HOSTILE_RUNS)
def test_report_reads_nothing_outside_the_run_folder(rnr, finished_run, tmp_path, hostile):
    run, outside = tmp_path / "out", tmp_path / "outside"
    shutil.copytree(finished_run, run, symlinks=True)
    HOSTILE_RUNS[hostile](run, outside)
    outside_before = hashes(outside)
    spy = tmp_path / "opened.json"
    res = rnr(["report", "out"], cwd=tmp_path, spy=spy, timeout=60)
    assert res.code is not None, "rnr report blocked (on a FIFO?)"
    assert res.code == 0, res.err
    assert_no_traceback(res)
    opened = [os.path.realpath(p) for p in json.loads(spy.read_text())]
    assert any(p.startswith(str(run.resolve())) for p in opened), "the spy saw the report read nothing"
    assert not [p for p in opened if p.startswith(str(outside.resolve()))], "the report opened a file outside"
    assert hashes(outside) == outside_before
    html = (run / "report.html").read_text()
    assert "restored image missing" in html or "no preview" in html


def _plant(entry: Path, kind: str, outside: Path) -> None:
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink(missing_ok=True)
    if kind == "link to a file":
        entry.symlink_to(outside / "victim.txt")
    elif kind == "link to a folder":
        entry.symlink_to(outside, target_is_directory=True)
    elif kind == "FIFO":
        os.mkfifo(entry)
    else:
        entry.mkdir()


#: What a run keeps in its folder, replaced by something it must never write through or block on: `--resume` refuses
#: in one line naming it, writes nothing outside and never blocks; `report` reads nothing outside.
PLANTED = {
    "manifest: a link out": (MANIFEST, "link to a file"),  # appending would write the file it points to
    "manifest: a FIFO": (MANIFEST, "FIFO"),  # opening it to append blocks
    "manifest: a folder": (MANIFEST, "folder"),
    "names: a link out": (".rnr/names.jsonl", "link to a file"),
    "names: a FIFO": (".rnr/names.jsonl", "FIFO"),
    "names: a folder": (".rnr/names.jsonl", "folder"),
    "lock: a link out": (".rnr/lock", "link to a file"),  # taking the lock truncates and writes it
    "lock: a FIFO": (".rnr/lock", "FIFO"),
    "lock: a folder": (".rnr/lock", "folder"),
    ".rnr: a link out": (".rnr", "link to a folder"),  # every write of the run would land outside
    "work: a link out": (".rnr/work", "link to a folder"),
    "previews: a link out": (".rnr/previews", "link to a folder"),  # previews would replace files outside
}


@pytest.mark.parametrize("case", PLANTED)
def test_a_planted_bookkeeping_entry_is_refused_never_written_through(rnr, tmp_path, case):
    entry, kind = PLANTED[case]
    make_inputs(tmp_path / "in", CRASH_INPUT)
    assert rnr(["restore", "in", "--out", "out"], cwd=tmp_path).code == 0
    make_inputs(tmp_path / "in", {"b.png": dict(photo="coffee", seed=2)})  # new work: names, rows, previews
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text('{"precious": true}\n')
    (outside / "b.jpg").write_bytes(b"not a preview")
    before = hashes(outside)
    _plant(tmp_path / "out" / entry, kind, outside)
    res = rnr(["restore", "in", "--out", "out", "--resume"], cwd=tmp_path, timeout=30)
    assert res.code is not None, "blocked"
    assert_no_traceback(res)
    assert res.code == 2, res.err
    assert "move it out of the way" in one_message(res, f"out/{entry}")
    assert hashes(outside) == before
    spy = tmp_path / "opened.json"
    report = rnr(["report", "out"], cwd=tmp_path, spy=spy, timeout=30)
    assert report.code is not None, "report blocked"
    assert_no_traceback(report)
    opened = [os.path.realpath(p) for p in json.loads(spy.read_text())]
    assert not [p for p in opened if p.startswith(str(outside.resolve()))], "the report opened a file outside"
    assert hashes(outside) == before


@pytest.mark.slow
def test_resume_replaces_a_link_out_never_writes_through_it(rnr, clean, tmp_path):
    # An output name that is a link to a file outside (planted before the image was done): the link is replaced,
    # the file it pointed to keeps its bytes.
    src = make_inputs(tmp_path / "in", CRASH_INPUT)
    victim = tmp_path / "victim.png"
    save_image(victim, noisy("chelsea", (32, 32), seed=5))
    victim_sha = sha(victim)
    crashed = rnr(["restore", "in", "--out", "out"], cwd=tmp_path, crash=("put", 4, "after"))
    assert crashed.code == 137
    for name in ("a.png", "a.json", ".rnr/previews/a.jpg"):
        (tmp_path / "out" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "out" / name).symlink_to(victim)
    res = rnr(["restore", "in", "--out", "out", "--resume"], cwd=tmp_path)
    assert res.code == 0, res.err
    assert sha(victim) == victim_sha
    assert not (tmp_path / "out" / "a.png").is_symlink()
    assert_same_outputs(tmp_path / "out", clean(src))


# ----- 6. FIFOs and links among the inputs


@pytest.fixture
def fifo_photos(tmp_path) -> Path:
    """photos/: x.png (an image), y.png (a FIFO), z.png (a link to an image outside photos/)."""
    photos = tmp_path / "photos"
    make_inputs(photos, {"x.png": CRASH_INPUT["a.png"]})
    os.mkfifo(photos / "y.png")
    make_inputs(tmp_path / "elsewhere", {"z.png": dict(photo="coffee", size=(64, 64), seed=3)})
    (photos / "z.png").symlink_to(tmp_path / "elsewhere" / "z.png")
    return photos


#: Command lines over photos/ (see fifo_photos): refused entries named once each, the rest processed, exit 1.
FIFO_CASES = {
    # a folder holding a FIFO and a link out
    "restore DIR": (["restore", "photos", "--out", "o"], {"y.png": "FIFO", "z.png": "--follow-symlinks"}, ["x"]),
    # the FIFO given by name
    "restore FIFO": (["restore", "photos/y.png", "--out", "o"], {"y.png": "FIFO"}, []),
    # the link followed when asked
    "restore DIR --follow-symlinks": (
        ["restore", "photos", "--out", "o", "--follow-symlinks"],
        {"y.png": "FIFO"},
        ["x", "z"],
    ),
    # diagnose reads the same folders
    "diagnose DIR": (["diagnose", "photos"], {"y.png": "FIFO", "z.png": "--follow-symlinks"}, None),
    # diagnose given the FIFO and the image
    "diagnose FILES": (["diagnose", "photos/y.png", "photos/x.png"], {"y.png": "FIFO"}, None),
}


@pytest.mark.parametrize("case", FIFO_CASES)
def test_fifos_and_links_out_are_refused_in_one_line(rnr, fifo_photos, case):
    argv, refused, done = FIFO_CASES[case]
    tmp = fifo_photos.parent
    elsewhere = hashes(tmp / "elsewhere")
    res = rnr(argv, cwd=tmp, timeout=60)
    assert res.code is not None, "blocked on the FIFO"
    assert res.code == 1, res.err
    assert_no_traceback(res)
    for name, why in refused.items():
        assert why in one_message(res, f"photos/{name}")
    if done is not None:
        rows = read_manifest(tmp / "o")
        assert sorted(n for n, r in rows.items() if r["status"] != "failed") == done
    else:
        assert "x.png" in res.out, "the image was not diagnosed"
    assert hashes(tmp / "elsewhere") == elsewhere


def test_diagnose_counts_refused_inputs_in_its_total(rnr, fifo_photos):
    res = rnr(["diagnose", "photos"], cwd=fifo_photos.parent, timeout=60)
    assert "2 of 3 image(s) failed" in res.err, res.err


# ----- 7. two runs on one --out


@pytest.mark.slow
def test_a_second_run_on_a_busy_out_is_refused_naming_the_first(rnr, tmp_path):
    photos = ["astronaut", "coffee", "chelsea", "camera"] * 2
    make_inputs(tmp_path / "in", {f"{i}.png": dict(photo=p, size=(200, 200), seed=i, top=0, left=0)
                                  for i, p in enumerate(photos)})  # fmt: skip
    first = start_rnr(["restore", "in", "--out", "out"], cwd=tmp_path)
    lock = tmp_path / "out" / ".rnr" / "lock"
    wait_for(lambda: str(first.pid) in (lock.read_text(errors="replace") if lock.is_file() else "")
             or first.poll() is not None, what="the first run's lock")  # fmt: skip
    seconds = {
        "the same command": rnr(["restore", "in", "--out", "out"], cwd=tmp_path),
        "with --resume": rnr(["restore", "in", "--out", "out", "--resume"], cwd=tmp_path),
    }
    assert first.poll() is None, "the first run finished before the second started"
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    for what, res in seconds.items():
        assert res.code == 2, f"{what}: {res.err}"
        assert_no_traceback(res)
        assert f"pid {first.pid}" in one_message(res, "another rnr run"), what
    rows = [json.loads(line) for line in (tmp_path / "out" / MANIFEST).read_text().splitlines()]
    assert sorted(r["name"] for r in rows) == [str(i) for i in range(8)]
    assert_tidy(tmp_path / "out")


# ----- 8. --out overlapping the inputs


@pytest.fixture
def photos(tmp_path) -> Path:
    return make_inputs(tmp_path / "photos", {"a.png": CRASH_INPUT["a.png"], "b.png": dict(photo="coffee", seed=2)})


def test_out_may_not_be_the_input_folder(rnr, photos):
    tmp = photos.parent
    (tmp / "alias").symlink_to(photos, target_is_directory=True)
    before = hashes(photos)
    for argv in (["restore", "photos/", "--out", "photos/"],  # the folder itself
                 ["restore", "photos", "--out", "alias"],  # a link to it
                 ["restore", "photos", "--out", "photos/."]):  # fmt: skip
        res = rnr(argv, cwd=tmp)
        assert res.code == 2, res.err
        assert_no_traceback(res)
        assert "is the input folder" in one_message(res, "--out")
        assert hashes(photos) == before, "something was created in the input folder"


def test_out_inside_the_inputs_is_never_read_back(rnr, photos):
    tmp = photos.parent
    before = hashes(photos)
    argv = ["restore", "photos", "-r", "--out", "photos/restored"]
    assert rnr(argv, cwd=tmp).code == 0
    again = rnr([*argv, "--resume"], cwd=tmp)
    assert again.code == 0, again.err
    assert "resuming: 2 of 2" in again.err
    assert sorted(read_manifest(photos / "restored")) == ["a", "b"]
    assert not [p for p in (photos / "restored").iterdir() if p.name.startswith("restored")]
    assert {k: v for k, v in hashes(photos).items() if not k.startswith("restored")} == before


def test_an_output_never_replaces_an_input(rnr, photos):
    tmp = photos.parent
    before = hashes(photos)
    res = rnr(["restore", "photos/a.png", "--out", "photos"], cwd=tmp)
    assert res.code == 0, res.err
    assert {k: v for k, v in hashes(photos).items() if k in before} == before
    (row,) = read_manifest(photos).values()
    assert row["output"] != "a.png" and (photos / row["output"]).is_file()


@pytest.mark.parametrize(
    "records, code",
    [
        ("photos/a.png", 2),  # the input itself: refused, the image kept
        ("photos/b.png", 2),  # another image: refused (records are JSON lines)
        ("records.jsonl", 0),  # a new records file: written
    ],
)
def test_diagnose_out_never_replaces_an_image(rnr, photos, records, code):
    tmp = photos.parent
    before = hashes(photos)
    res = rnr(["diagnose", "photos/a.png", "--out", records], cwd=tmp)
    assert res.code == code, res.err
    assert_no_traceback(res)
    assert hashes(photos) == before
    if code:
        one_message(res, records)
    else:
        (line,) = (tmp / records).read_text().splitlines()
        assert json.loads(line)["image"]["path"] == "photos/a.png"


# ----- 9. a name clash appearing between runs


def test_a_new_input_never_takes_an_earlier_inputs_name(rnr, clean, tmp_path):
    src = make_inputs(tmp_path / "in", {"a.png": CRASH_INPUT["a.png"]})
    assert rnr(["restore", "in", "--out", "out"], cwd=tmp_path).code == 0
    a_png = sha(tmp_path / "out" / "a.png")
    save_image(src / "a.jpg", noisy("coffee", seed=7))  # a.jpg sorts first: a clean run would call it "a"
    res = rnr(["restore", "in", "--out", "out", "--resume"], cwd=tmp_path)
    assert res.code == 0, res.err
    assert "resuming: 1 of 2" in res.err
    assert sha(tmp_path / "out" / "a.png") == a_png
    got = results(tmp_path / "out", by="input")
    assert got["in/a.jpg"]["name"] != "a" and got["in/a.jpg"]["status"] == "ok"
    want = results(clean(src), by="input")
    for inp in ("in/a.png", "in/a.jpg"):
        assert got[inp]["png"] == want[inp]["png"], inp
    # The same path with new content: restored again, under its name.
    save_image(src / "a.png", noisy("camera", seed=8, top=0, left=0))
    res = rnr(["restore", "in", "--out", "out", "--resume"], cwd=tmp_path)
    assert res.code == 0, res.err
    assert "resuming: 1 of 2" in res.err
    got = results(tmp_path / "out", by="input")
    assert got["in/a.png"]["name"] == "a"
    assert got["in/a.png"]["png"] == results(clean(src), by="input")["in/a.png"]["png"]


# ----- 10, 11, 12, 13. no images, the memory guard, secrets, tiny images


def test_no_images_creates_nothing(rnr, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    res = rnr(["restore", "empty", "--out", "X"], cwd=tmp_path)
    assert res.code == 2
    assert_no_traceback(res)
    assert "no images found" in one_message(res, "empty")
    assert not (tmp_path / "X").exists()


def test_max_pixels_refuses_a_large_image_in_one_line(rnr, tmp_path):
    make_inputs(tmp_path / "in", {"big.png": dict(photo="astronaut", size=(128, 128))})
    res = rnr(["restore", "in/big.png", "--out", "X", "--max-pixels", "10000"], cwd=tmp_path)
    assert res.code == 1
    assert_no_traceback(res)
    assert "--max-pixels" in one_message(res, "in/big.png")
    (row,) = read_manifest(tmp_path / "X").values()
    assert row["status"] == "failed"


@pytest.mark.parametrize(
    "avail, workers, expect",
    [
        (None, 1, "decompression-bomb guard"),  # memory unknown: the fixed guard
        (64 * 1024**4, 1, "decompression-bomb guard"),  # plenty: the fixed guard
        (2 * 1024**3, 1, "memory guard"),  # 2 GB: what fits at 300 B/px
        (2 * 1024**3, 4, "memory guard"),  # shared by 4 workers: a quarter of that
        (0, 1, "memory guard"),  # nothing available: still a positive limit, never 0
    ],
)
def test_the_memory_guard_follows_available_memory(monkeypatch, avail, workers, expect):
    from reasoner import imageio

    monkeypatch.delenv("RNR_MAX_PIXELS", raising=False)
    monkeypatch.setattr(imageio, "available_memory", lambda: avail)
    limit = imageio.resolve_max_pixels(None, "restore", workers=workers)
    assert expect in limit.why and limit >= 1
    if expect == "memory guard" and avail:
        assert limit == int(avail * imageio.MEMORY_SHARE / workers / imageio.PEAK_BYTES_PER_PIXEL["restore"])


def test_the_pixel_limit_reaches_workers_intact():
    # Pool workers under spawn/forkserver (Python 3.14's default) and Ray workers get the limit by pickle: int's own
    # reduce dropped ``why`` and every Ray worker died starting ("PixelLimit.__new__() missing ... 'why'").
    import pickle

    from reasoner.imageio import resolve_max_pixels

    limit = resolve_max_pixels(1234, "restore")
    back = pickle.loads(pickle.dumps(limit))
    assert back == 1234 and back.why == limit.why == "--max-pixels"


SECRET_URL = "postgres://u:hunter2@127.0.0.1:1/db?password=hunter3&sslmode=disable"


def test_checkpoint_url_secrets_never_reach_stderr(rnr, tmp_path):
    pytest.importorskip("psycopg")
    make_inputs(tmp_path / "in", CRASH_INPUT)
    res = rnr(["restore", "in", "--out", "o", "--checkpoint", SECRET_URL], cwd=tmp_path)
    assert res.code == 2
    assert_no_traceback(res)
    assert "hunter2" not in res.err + res.out and "hunter3" not in res.err + res.out
    assert "u:***@127.0.0.1" in one_message(res, "--checkpoint")
    assert not (tmp_path / "o").exists()


def test_the_resume_command_masks_secrets(monkeypatch):
    from agent.cli.restore import resume_command

    monkeypatch.setattr(sys, "argv", ["rnr", "restore", "in", "--out", "o", "--checkpoint", SECRET_URL])
    cmd = resume_command()
    assert "hunter2" not in cmd and "hunter3" not in cmd
    assert cmd.startswith("rnr restore in --out o --checkpoint") and cmd.endswith("--resume")


def test_tiny_images_get_a_trace_or_one_line(rnr, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for h, w in ((1, 1), (2, 2), (7, 3), (3, 7), (1, 64)):
        save_image(src / f"{h}x{w}.png", rng.random((h, w, 3), dtype=np.float32))
    res = rnr(["restore", "in", "--out", "out"], cwd=tmp_path)
    assert res.code in (0, 1), res.err
    assert_no_traceback(res)
    rows = read_manifest(tmp_path / "out")
    assert len(rows) == 5
    for name, row in rows.items():
        if row["status"] == "failed":
            one_message(res, f"in/{name}.png")
        else:
            Trace.model_validate_json((tmp_path / "out" / row["trace"]).read_text())
