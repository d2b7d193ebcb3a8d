"""Fault injection for the promises of batch restoration (see the docstring of ``agent/batch.py``): the harness.

SQLite's test suite is the model: each case breaks one thing (a crash before or after a checkpoint write, a signal,
``kill -9``, a full disk, a hostile or corrupt file the project reads back, a FIFO, a second run on the same folder)
and asserts what a user checks: the inputs' SHA-256 unchanged, outputs byte-identical to a clean run's, one line
naming the file, no traceback, the exit code. The cases are in ``test_safety_crash.py`` (crashes, signals, full
disks), ``test_safety_files.py`` (corrupt, hostile and planted files, FIFOs) and ``test_safety_cli.py`` (what the
command line promises: one writer per folder, inputs never overwritten, names, limits, secrets).

Command lines run as real ``rnr`` processes where the process itself is under test (signals, ``kill -9``, a second
writer, a full disk), and otherwise through a fork server (written to a temporary folder) that imports the package
once and runs each command line in a forked child: a separate process with its own exit code, stdout and stderr, in
a fraction of a second instead of the ~3 s of imports a fresh ``rnr`` pays. The fork server and the clean reference
runs are fixtures of ``conftest.py`` here, shared by the three files.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from agent.manifest import MANIFEST, read_manifest
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


def copy_in(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest / "in")
    return dest / "in"


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
