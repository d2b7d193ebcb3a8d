"""Fault injection, what the command line promises (harness: ``safety_harness.py``).

One writer per ``--out``, ``--out`` apart from the inputs, names that never move, no images, the memory guard,
secrets kept out of messages, tiny images.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from safety_harness import (
    CRASH_INPUT,
    assert_no_traceback,
    assert_tidy,
    hashes,
    make_inputs,
    noisy,
    one_message,
    results,
    sha,
    start_rnr,
    wait_for,
)

from agent.manifest import MANIFEST, read_manifest
from agent.trace import Trace
from reasoner.imageio import save_image

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
    assert got["in/a.jpg"]["name"] != "a" and got["in/a.jpg"]["status"] in ("ok", "unchanged")  # the scorer decides
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
        (2 * 1024**3, 1, "memory guard"),  # 2 GB: what fits at PEAK_BYTES_PER_PIXEL["restore"]
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
