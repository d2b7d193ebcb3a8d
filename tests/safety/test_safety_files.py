"""Fault injection, files (harness: ``safety_harness.py``).

Corrupt and hostile files the project reads back (manifest, names, lock, traces, report inputs), entries planted
where the run keeps its books, and FIFOs and links among the inputs.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from safety_harness import (
    CRASH_INPUT,
    assert_no_traceback,
    assert_same_outputs,
    copy_in,
    hashes,
    make_inputs,
    noisy,
    one_message,
    results,
    sha,
)

from agent.manifest import MANIFEST, read_manifest
from reasoner.imageio import save_image

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
