"""The Ray engine on a local runtime: the local engine's outputs byte for byte, resume, failure rows, input lists."""

import json
import sys
from pathlib import Path

import pytest

from agent.batch import MANIFEST, read_manifest, run_batch
from agent.ray_engine import expand_inputs, run_batch_ray
from reasoner.imageio import ImageLoadError, save_image
from rl import degradations as D
from rl.photos import load_photo

try:
    import ray
    import ray.data  # noqa: F401
except ImportError:
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason="ray[data] is not installed: pip install 'reason-restore[dist]'")

# Wall-clock and timestamps differ between any two runs; everything else must match exactly.
_VOLATILE = {"timings", "created_at", "elapsed_s", "seconds"}


def _stable(obj):
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in _VOLATILE}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def _outputs(out: Path) -> dict[str, object]:
    """Visible output files: PNG bytes, traces and manifest rows without timings."""
    files = {}
    for p in sorted(out.iterdir()):
        if p.name == MANIFEST:
            files[p.name] = sorted((_stable(r) for r in read_manifest(out).values()), key=lambda r: r["name"])
        elif p.suffix == ".json":
            files[p.name] = _stable(json.loads(p.read_text()))
        elif p.is_file():
            files[p.name] = p.read_bytes()
    return files


@pytest.fixture(scope="module")
def runtime():
    # One local runtime for the module (start-up is seconds); run_batch_ray uses it and leaves it running.
    ray.init(num_cpus=3, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("in")
    ops = {"coffee": D.NoiseParams(sigma=20, seed=1), "camera": D.JpegParams(quality=15), "astronaut": None}
    for name, op in ops.items():
        img = load_photo(name)[:96, :96]
        save_image(src / f"{name}.png", D.apply(img, [op]) if op else img)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return src


@pytest.fixture(scope="module")
def local_run(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    run_batch([folder], out)
    return out


@needs_ray
def test_ray_matches_local_and_records_the_bad_file(runtime, folder, local_run, tmp_path):
    out = tmp_path / "out"
    seen = []
    summary = run_batch_ray([folder], out, workers=2, on_row=seen.append)
    assert sorted(r["name"] for r in summary.done) == ["astronaut", "camera", "coffee"]
    # the corrupt file is a failure row, not a crash, with the local engine's one-line error
    assert [r["name"] for r in summary.failed] == ["broken"] and "broken.png" in summary.failed[0]["error"]
    assert len(seen) == 4
    assert _outputs(out) == _outputs(local_run)
    assert not list(out.glob("**/*.tmp"))


@needs_ray
def test_interrupted_ray_run_resumes_only_the_missing_images(runtime, folder, local_run, tmp_path):
    out = tmp_path / "out"
    run_batch_ray([folder], out, workers=2)
    with pytest.raises(FileExistsError, match="--resume"):
        run_batch_ray([folder], out)
    # What a kill leaves: camera's image written but its row never appended, coffee's row torn mid-line.
    rows = [r for r in read_manifest(out).values() if r["name"] not in ("camera", "coffee")]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"input": "in/coffee.png", "na'
    (out / MANIFEST).write_text(text)
    (out / "coffee.png").unlink()
    summary = run_batch_ray([folder], out, workers=1, resume=True)
    assert summary.skipped == ["astronaut"]
    assert sorted(r["name"] for r in summary.done + summary.failed) == ["broken", "camera", "coffee"]
    assert _outputs(out) == _outputs(local_run)


@needs_ray
def test_output_options_are_the_local_engines(runtime, folder, tmp_path):
    from agent.batch import OutputOptions

    webp = OutputOptions("webp", 80)
    run_batch([folder], tmp_path / "local", output=webp)
    run_batch_ray([folder], tmp_path / "ray", workers=2, output=webp)
    assert _outputs(tmp_path / "ray") == _outputs(tmp_path / "local")
    written = sorted(p.name for p in (tmp_path / "ray").glob("*.webp"))
    assert written == ["astronaut.webp", "camera.webp", "coffee.webp"]


@needs_ray
def test_glob_and_path_lists_name_outputs_like_files(runtime, folder, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    lst = tmp_path / "paths.txt"
    lst.write_text(f"# two of them\n{folder / 'coffee.png'}\n\n{folder / 'camera.png'}\n")
    pq.write_table(pa.table({"path": [str(folder / "coffee.png"), "rel/a.png"]}), tmp_path / "paths.parquet")
    assert expand_inputs([lst]) == [folder / "coffee.png", folder / "camera.png"]
    # relative entries are taken from the list's folder
    assert expand_inputs([tmp_path / "paths.parquet"]) == [folder / "coffee.png", tmp_path / "rel/a.png"]
    assert expand_inputs([str(folder / "c*.png")]) == [folder / "camera.png", folder / "coffee.png"]
    with pytest.raises(ImageLoadError, match="matches no file"):
        expand_inputs([str(folder / "*.tif")])
    summary = run_batch_ray([lst, str(folder / "a*.png")], tmp_path / "out")
    assert sorted(r["name"] for r in summary.done) == ["astronaut", "camera", "coffee"]


def test_missing_extra_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # what a Python without Ray sees
    with pytest.raises(ImportError, match=r"pip install 'reason-restore\[dist\]'"):
        run_batch_ray([tmp_path], tmp_path / "out")


def test_a_full_disk_in_an_actor_stops_the_driver_with_the_space_needed(tmp_path, monkeypatch):
    # The actor turns DiskFullError into a row (exceptions do not cross Ray Data's map), the driver raises it again:
    # the "about ... more needed" figure must survive the trip (it used to be dropped).
    from agent.backends import Backends
    from agent.ray_engine import _Restorer, driver_row
    from agent.state import Settings
    from reasoner.files import DiskFullError

    monkeypatch.chdir(tmp_path)  # the actor moves to the driver's working folder; the test's is restored after
    actor = _Restorer(Backends(), Settings(), str(tmp_path / "out"), str(tmp_path))

    def full(item, out, checkpoint=None):
        raise DiskFullError(out / "a.png", 5 * 1024**2)

    monkeypatch.setattr(actor.worker, "process", full)
    (text,) = actor({"path": ["a.png"], "name": ["a"], "sha256": [""]})["row"]
    with pytest.raises(DiskFullError, match="about 5.0 MB more needed") as e:
        driver_row(json.loads(text))
    assert e.value.needed == 5 * 1024**2 and e.value.path.endswith("a.png")
