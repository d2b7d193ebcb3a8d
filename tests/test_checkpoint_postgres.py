"""Shared checkpoints on a real PostgreSQL server, started on loopback for this module and removed afterwards.

The server is Debian's ``postgresql`` package (``initdb`` / ``pg_ctl`` under ``/usr/lib/postgresql/<v>/bin`` or on
``PATH``). PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` system user. Tests are
skipped, with the reason, only when the binaries are absent or the server cannot start.
"""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from langgraph.runtime import Runtime

from agent.batch import Item, read_manifest, run_batch
from agent.checkpoint import memory_checkpointer, postgres_checkpointer, redact
from agent.graph import build_graph, final_pixels
from agent.run import make_context, run_graph, thread_id
from agent.state import Context, RestoreState
from reasoner.imageio import load_image, save_image
from rl import degradations as D
from rl.photos import load_photo

psycopg = pytest.importorskip("psycopg", reason="needs psycopg: pip install 'reason-restore[dist]'")
pytest.importorskip("langgraph.checkpoint.postgres", reason="needs langgraph-checkpoint-postgres (extra 'dist')")


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    pg_ctl = found[-1] if found else shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl and (Path(pg_ctl).parent / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_url():
    """URL of a throwaway database on a fresh server (trust auth on loopback only, no fsync: test data)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found; install Debian's postgresql package")
    root = Path(tempfile.mkdtemp(prefix="rnr-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root and runuser is missing, so PostgreSQL (which refuses root) cannot start")
        subprocess.run(["chown", "postgres:", str(root)], check=True)  # fails if there is no postgres user
        as_user = [runuser, "-u", "postgres", "--"]
    data, port = root / "data", _free_port()

    def pg(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=60)

    res = pg(str(bindir / "initdb"), "-D", str(data), "-U", "rnr", "--auth=trust", "-E", "UTF8", "--no-sync")
    if res.returncode == 0:
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        log = str(root / "log")
        res = pg(str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", log, "-w", "-t", "30", "start")
    if res.returncode != 0:
        log = (root / "log").read_text(errors="replace")[-500:] if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start PostgreSQL: {(res.stderr or res.stdout).strip()[-500:]} {log}")
    try:
        with psycopg.connect(f"postgresql://rnr@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE rnr_test")
        yield f"postgresql://rnr@127.0.0.1:{port}/rnr_test"
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _rows(url: str, thread: str) -> int:
    with psycopg.connect(url) as conn:
        return sum(
            conn.execute(f"SELECT count(*) FROM {t} WHERE thread_id = %s", (thread,)).fetchone()[0]
            for t in ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
        )


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("in")
    ops = {"coffee": D.NoiseParams(sigma=20, seed=1), "camera": D.JpegParams(quality=15)}
    for name, op in ops.items():
        save_image(src / f"{name}.png", D.apply(load_photo(name)[:96, :96], [op]))
    return src


@pytest.fixture(scope="module")
def sqlite_run(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sqlite") / "out"
    run_batch([folder], out)
    return out


def _same_images(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.glob("*.png"))
    assert names and names == sorted(p.name for p in b.glob("*.png"))
    for name in names:
        assert np.array_equal(load_image(a / name).pixels, load_image(b / name).pixels), name


def _interrupt(url: str, image: Path, ctx, work: Path, thread: str, steps: int) -> tuple[str, ...]:
    """Run ``steps`` nodes of a thread with synchronous checkpoints, then drop the connection (a killed worker)."""
    saver = postgres_checkpointer(url, setup=True)
    try:
        graph = build_graph(saver)
        cfg = {"configurable": {"thread_id": thread}, "recursion_limit": 64}
        start = RestoreState(input_path=str(image), work_dir=str(work))
        stream = graph.stream(start, cfg, context=ctx, stream_mode="updates", durability="sync")
        for i, _ in enumerate(stream):
            if i + 1 == steps:
                break
        stream.close()
        return graph.get_state(cfg).next
    finally:
        saver.conn.close()


def test_interrupted_run_resumes_from_a_fresh_connection(pg_url, folder, tmp_path):
    ctx, image = make_context(), folder / "coffee.png"
    whole = run_graph(image, ctx, tmp_path / "ref", checkpointer=memory_checkpointer(), thread="ref")
    work = tmp_path / "work"
    assert _interrupt(pg_url, image, ctx, work, "resume-me", steps=3) == ("restore",)
    saver = postgres_checkpointer(pg_url)  # another process or host: a new connection, nothing in memory
    try:
        resumed = run_graph(image, ctx, work, checkpointer=saver, thread="resume-me")
    finally:
        saver.conn.close()
    volatile = {"provenance": {"elapsed_s", "created_at"}}  # wall-clock; everything else must match
    assert resumed.record.model_dump(exclude=volatile) == whole.record.model_dump(exclude=volatile)
    assert resumed.decision == whole.decision and resumed.plan == whole.plan
    assert [a.verdict for a in resumed.attempts] == [a.verdict for a in whole.attempts]
    assert np.array_equal(final_pixels(resumed), final_pixels(whole))


def test_batch_resumes_a_thread_another_host_left_and_deletes_it(pg_url, folder, sqlite_run, tmp_path, monkeypatch):
    # Host A died after diagnosing coffee; host B runs the batch on the same --out and picks the thread up.
    import agent.graph

    out, ctx = tmp_path / "out", make_context()
    item = Item(folder / "coffee.png", "coffee")
    thread = thread_id(item.path, ctx)
    assert _interrupt(pg_url, item.path, ctx, out / ".rnr" / "work" / thread, thread, steps=1)
    assert _rows(pg_url, thread) > 0
    diagnosed, node = [], agent.graph.diagnose

    def counting(state: RestoreState, runtime: Runtime[Context]) -> dict:  # LangGraph injects by this signature
        diagnosed.append(state.input_path)
        return node(state, runtime)

    monkeypatch.setattr(agent.graph, "diagnose", counting)
    summary = run_batch([folder], out, checkpoint=pg_url)
    assert diagnosed == [str(folder / "camera.png")]  # coffee continued from its checkpoint, not from scratch
    assert sorted(r["name"] for r in summary.done) == ["camera", "coffee"] and not summary.failed
    _same_images(out, sqlite_run)
    assert _rows(pg_url, thread) == 0  # finished images leave no checkpoint behind, as with SQLite
    assert not list((out / ".rnr" / "work").iterdir())


def test_cli_restore_with_postgres_checkpoints(pg_url, folder, sqlite_run, tmp_path):
    rnr = Path(sys.executable).with_name("rnr")
    out = tmp_path / "out"
    res = subprocess.run(
        [rnr, "restore", str(folder), "--out", str(out), "--checkpoint", pg_url, "--json", "-j", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    statuses = {json.loads(line)["name"]: json.loads(line)["status"] for line in res.stdout.splitlines()}
    assert statuses == {name: row["status"] for name, row in read_manifest(sqlite_run).items()}  # same verdicts
    assert sorted(read_manifest(out)) == ["camera", "coffee"]
    _same_images(out, sqlite_run)
    ctx = make_context()
    assert all(_rows(pg_url, thread_id(folder / f"{n}.png", ctx)) == 0 for n in ("camera", "coffee"))


def test_ray_engine_with_postgres_checkpoints(pg_url, folder, sqlite_run, tmp_path):
    pytest.importorskip("ray.data", reason="needs ray[data]: pip install 'reason-restore[dist]'")
    from agent.ray_engine import run_batch_ray

    out = tmp_path / "out"
    summary = run_batch_ray([folder], out, workers=1, checkpoint=pg_url)
    assert sorted(r["name"] for r in summary.done) == ["camera", "coffee"]
    _same_images(out, sqlite_run)


@pytest.mark.parametrize(
    "url, message",
    [
        # nothing listens on port 1: refused before any image is touched
        ("postgresql://nobody:s3cret@127.0.0.1:1/db", "cannot connect to PostgreSQL"),
        # not a URL the checkpointer knows
        ("mysql://127.0.0.1/db", "use sqlite or a postgres://"),
    ],
)
def test_bad_checkpoint_url_fails_before_any_work(folder, tmp_path, url, message):
    rnr = Path(sys.executable).with_name("rnr")
    out = tmp_path / "out"
    res = subprocess.run([rnr, "restore", str(folder), "--out", str(out), "--checkpoint", url],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode != 0
    text = " ".join(res.stderr.replace("│", " ").split())  # typer draws usage errors in a wrapped box
    assert message in text and "s3cret" not in text
    assert not out.exists()


def test_redact_hides_only_the_password():
    assert redact("postgres://u:pw@h:5432/db") == "postgres://u:***@h:5432/db"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
