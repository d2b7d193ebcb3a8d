"""Reference retrieval: the weight-free embedder on real photos, the FAISS library folder, `rnr index`, HF models."""

import json
import sqlite3
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from agent.cli.index import index_app
from reasoner.imageio import save_image
from retrieval.base import Embedder, Reference
from retrieval.embedders import GlobalDescriptorEmbedder, _remove_rain
from retrieval.library import AddResult, LibraryError, ReferenceLibrary
from retrieval.registry import load_embedder
from rl import degradations as D
from rl.photos import EVALUATION_PHOTOS, load_photo

SCENES = ("astronaut", "coffee", "camera", "motorcycle_right", "sklearn_china", "chelsea", "rocket", "coins")
runner = CliRunner()


def flat(text: str) -> str:
    """CLI output with rich's box drawing and line wrapping undone, so messages can be matched whole."""
    return " ".join(text.replace("│", " ").split())


@pytest.fixture(scope="module")
def embedder() -> GlobalDescriptorEmbedder:
    return GlobalDescriptorEmbedder()


def first_view(name: str) -> np.ndarray:
    img = load_photo(name)
    h, w = img.shape[:2]
    return np.ascontiguousarray(img[: int(h * 0.85), : int(w * 0.85)])


def second_view(name: str, seed: int = 0) -> np.ndarray:
    """Another crop of the scene, mirrored, slightly rotated, darker, then noisy and JPEG-compressed."""
    img = load_photo(name)
    h, w = img.shape[:2]
    x = np.ascontiguousarray(img[int(h * 0.1) :, int(w * 0.12) :][:, ::-1])
    rot = cv2.getRotationMatrix2D((x.shape[1] / 2, x.shape[0] / 2), 4.0, 1.0)
    x = cv2.warpAffine(x, rot, (x.shape[1], x.shape[0]), borderMode=cv2.BORDER_REFLECT_101)
    x = np.clip(x * np.float32(0.8), 0, 1) ** np.float32(1.1)
    return D.apply(x, [D.NoiseParams(sigma=12, seed=seed), D.JpegParams(quality=40)])


def add_photos(lib: ReferenceLibrary, names, category="default") -> AddResult:
    return lib.add([first_view(n) for n in names], category=category, ids=list(names))


# ----- embedder


def test_global_embedder_is_deterministic_unit_norm_and_mirror_invariant(embedder):
    img = load_photo("astronaut")
    a, b = embedder.embed([img]), embedder.embed([img.copy()])
    assert isinstance(embedder, Embedder)
    assert a.dtype == np.float32 and a.shape == (1, embedder.dim) and 200 <= embedder.dim <= 2048
    np.testing.assert_array_equal(a, b)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert float(embedder.embed([np.ascontiguousarray(img[:, ::-1])])[0] @ a[0]) > 0.999
    assert float(embedder.embed([(img * 255).round().astype(np.uint8)])[0] @ a[0]) > 0.999
    with pytest.raises(ValueError, match="HxWx3"):
        embedder.embed([img[..., 0]])


@pytest.mark.parametrize("kind", sorted(D.SAMPLERS))
def test_degraded_photo_stays_closest_to_its_original(embedder, kind):
    # Each held-out photo, degraded by one sampled kind, must be nearer its clean self than any other photo.
    names = EVALUATION_PHOTOS + ("chelsea", "rocket", "coins")
    clean = embedder.embed([load_photo(n) for n in names])
    rng = np.random.default_rng(sorted(D.SAMPLERS).index(kind))
    for i, name in enumerate(EVALUATION_PHOTOS):
        v = embedder.embed([D.apply(load_photo(name), D.sample_ops(rng, kinds=[kind]))])[0]
        sims = clean @ v
        assert sims[i] > np.delete(sims, i).max(), (name, kind, sims.round(3))


def test_rain_streaks_are_taken_out_but_dots_and_clean_photos_stay():
    # The moon is grey with little structure of its own, so streaks would dominate its descriptor if left in.
    moon = cv2.resize(load_photo("moon"), (256, 256), interpolation=cv2.INTER_AREA)
    for seed in range(3):
        rainy = D.apply(moon, [D.RainParams(coverage=0.06, seed=seed)])
        assert np.abs(_remove_rain(rainy) - moon).mean() < 0.45 * np.abs(rainy - moon).mean()
    assert np.abs(_remove_rain(moon) - moon).mean() < 0.005
    dots = np.full((64, 64, 3), 0.2, np.float32)  # small bright blobs are not streaks: not even one is touched
    dots[10:12, 10:12] = 1.0
    dots[40:43, 30:33] = 1.0
    np.testing.assert_array_equal(_remove_rain(dots), dots)
    assert _remove_rain(np.zeros((600, 400, 3), np.float32)).shape == (320, 213, 3)  # large images are shrunk


# ----- library


def test_round_trip_persists_and_writes_no_pickle(tmp_path, embedder):
    root = tmp_path / "lib"
    with ReferenceLibrary.create(root, embedder) as lib:
        added = add_photos(lib, SCENES[:4])
        save_image(tmp_path / "chelsea.png", load_photo("chelsea"))
        added += lib.add([tmp_path / "chelsea.png"])
        before = lib.search(second_view("coffee"), k=3, threshold=float("-inf"))
    assert len(added) == 5
    meta = json.loads((root / "library.json").read_text())
    assert meta["format"] == "reason-restore.reference-library" and meta["schema_version"] == "1.0"
    assert meta["embedder"] == {"name": "global", "version": embedder.version, "dim": embedder.dim}
    assert meta["index"] == {"type": "flat", "params": {}} and meta["created"] <= meta["updated"]
    with sqlite3.connect(root / "entries.sqlite") as db:
        cols = [r[1] for r in db.execute("PRAGMA table_info(entries)")]
    assert cols[:7] == ["id", "path", "category", "sha256", "width", "height", "added_at"]

    with ReferenceLibrary.open(root) as lib:  # embedder reloaded from the recorded name
        assert len(lib) == 5 and lib.categories == ["default"]
        after = lib.search(second_view("coffee"), k=3, threshold=float("-inf"))
        assert [r.model_dump() for r in after] == [r.model_dump() for r in before]
        ref = after[0]
        assert isinstance(ref, Reference) and ref.rank == 1 and ref.embedder == f"global@{embedder.version}"
        pixels = lib.load_pixels(ref)
        assert pixels.shape == first_view("coffee").shape and pixels.dtype == np.float32
        assert lib.get(added[4])["path"] == str((tmp_path / "chelsea.png").resolve())  # files stay where they are
    for p in root.rglob("*"):
        assert p.suffix not in {".pkl", ".pickle", ".npy", ".npz", ".tmp"}, p
        if p.is_file():
            assert p.read_bytes()[:2] not in (b"\x80\x03", b"\x80\x04", b"\x80\x05"), f"{p} looks like a pickle"


class _OtherVersion(GlobalDescriptorEmbedder):
    version = "0-test"


def test_embedder_mismatch_is_refused_with_one_line(tmp_path, embedder):
    ReferenceLibrary.create(tmp_path / "lib", embedder).close()
    with pytest.raises(LibraryError) as err:
        ReferenceLibrary.open(tmp_path / "lib", _OtherVersion())
    msg = str(err.value)
    assert "\n" not in msg and "built with embedder 'global' version" in msg and "0-test" in msg and "rebuild" in msg
    with pytest.raises(LibraryError, match="not a reference library"):
        ReferenceLibrary.open(tmp_path / "nowhere")
    with pytest.raises(LibraryError, match="already exists"):
        ReferenceLibrary.create(tmp_path / "lib", embedder)


def test_exact_search_finds_the_second_view(tmp_path, embedder):
    with ReferenceLibrary.create(tmp_path / "lib", embedder) as lib:
        add_photos(lib, SCENES)
        for name in ("coffee", "chelsea", "astronaut"):
            refs = lib.search(second_view(name, seed=3), k=5, threshold=float("-inf"))
            assert refs[0].id == name, [(r.id, round(r.score, 3)) for r in refs]
            assert [r.rank for r in refs] == [1, 2, 3, 4, 5]
            assert all(a.score >= b.score for a, b in zip(refs, refs[1:], strict=False))


def test_threshold_drops_weak_matches(tmp_path, embedder):
    with ReferenceLibrary.create(tmp_path / "lib", embedder, threshold=0.99) as lib:
        add_photos(lib, SCENES[:5])
        assert lib.threshold == 0.99
        query = first_view("camera")
        assert [r.id for r in lib.search(query, k=5)] == ["camera"]  # only the identical image passes 0.99
        assert len(lib.search(query, k=5, threshold=float("-inf"))) == 5
        weakest = lib.search(query, k=5, threshold=float("-inf"))[-1].score
        assert all(r.score >= weakest + 1e-3 for r in lib.search(query, k=5, threshold=weakest + 1e-3))
        lib.threshold = 0.5
    with ReferenceLibrary.open(tmp_path / "lib") as lib:
        assert lib.threshold == 0.5


def test_categories_are_separate_sub_libraries(tmp_path, embedder):
    with ReferenceLibrary.create(tmp_path / "lib", embedder) as lib:
        add_photos(lib, ("coffee", "astronaut"), category="people_food")
        add_photos(lib, ("brick", "grass", "gravel"), category="textures")
        assert lib.categories == ["people_food", "textures"] and lib.counts() == {"people_food": 2, "textures": 3}
        q = second_view("coffee")
        only = lib.search(q, k=5, category="textures", threshold=float("-inf"))
        assert {r.category for r in only} == {"textures"} and len(only) == 3
        both = lib.search(q, k=5, category=["textures", "people_food"], threshold=float("-inf"))
        assert both[0].id == "coffee" and len(both) == 5
        with pytest.raises(LibraryError, match="no category 'faces'"):
            lib.search(q, category="faces")
        with pytest.raises(LibraryError, match="bad category"):
            lib.add([first_view("camera")], category="../escape")


def test_ivf_and_hnsw_agree_with_flat(tmp_path, embedder):
    rng = np.random.default_rng(0)
    crops, ids = [], []
    for name in SCENES:
        img = load_photo(name)
        for j in range(10):  # 80 crops: enough to train IVF with 2 lists (39 points per list)
            y, x = rng.integers(0, img.shape[0] - 96), rng.integers(0, img.shape[1] - 96)
            crops.append(np.ascontiguousarray(img[y : y + 96, x : x + 96]))
            ids.append(f"{name}-{j}")
    vectors = embedder.embed(crops)
    queries = [vectors[i] + 0.01 * rng.standard_normal(vectors.shape[1]).astype(np.float32) for i in (0, 17, 42, 79)]
    tops = {}
    for kind, params in (("flat", {}), ("ivf", {"nlist": 2, "nprobe": 2}), ("hnsw", {"M": 8})):
        with ReferenceLibrary.create(tmp_path / kind, embedder, kind, **params) as lib:
            assert len(lib.add(crops, ids=ids)) == 80
        with ReferenceLibrary.open(tmp_path / kind, embedder) as lib:
            assert type(lib._indexes["default"]).__name__ == {
                "flat": "IndexFlatIP", "ivf": "IndexIVFFlat", "hnsw": "IndexHNSWFlat"
            }[kind]  # fmt: skip
            tops[kind] = [lib.search(q, k=1, threshold=float("-inf"))[0].id for q in queries]
    assert tops["flat"] == [ids[i] for i in (0, 17, 42, 79)]
    assert tops["ivf"] == tops["flat"] and tops["hnsw"] == tops["flat"]
    with pytest.raises(LibraryError, match="takes"):
        ReferenceLibrary.create(tmp_path / "bad", embedder, "hnsw", nlist=4)


def clustered_unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 20 centres in a 16-dim subspace, so neighbours are meaningful (not equidistant)."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((16, dim)).astype(np.float32)
    centres = rng.standard_normal((20, 16)).astype(np.float32)
    latent = centres[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, 16)).astype(np.float32)
    x = latent @ basis + 0.05 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_ivf_pq_trains_persists_and_matches_exact_search(tmp_path):
    import faiss

    from retrieval.faiss_index import check_index_params, grow_index, index_kind, read_index

    dim = 70  # m=8 does not divide 70: the index pads to 72
    vecs = clustered_unit_vectors(3000, dim)
    params = check_index_params("ivf-pq", {"nlist": 16, "m": 8})
    index = grow_index(None, vecs[:500], dim, "ivf-pq", params)
    assert index_kind(index) == "flat"  # 500 < 39 * 256 points for an 8-bit PQ: stays exact
    params = check_index_params("ivf-pq", {"nlist": 16, "m": 8, "nbits": 6})  # 39 * 64 = 2496 points suffice
    index = grow_index(None, vecs[:1000], dim, "ivf-pq", params)
    index = grow_index(index, vecs[1000:], dim, "ivf-pq", params)
    assert index_kind(index) == "ivf-pq" and index.ntotal == 3000
    faiss.write_index(index, str(tmp_path / "pq.faiss"))
    again = read_index(tmp_path / "pq.faiss", dim, 3000, params)
    assert index_kind(again) == "ivf-pq" and again.k_factor == 40
    assert faiss.extract_index_ivf(again).nprobe == 16
    queries = vecs[::30] + 0.02 * np.random.default_rng(1).standard_normal((100, dim)).astype(np.float32)
    ground = faiss.IndexFlatIP(dim)
    ground.add(vecs)
    _, exact = ground.search(queries, 10)
    _, approx = again.search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.95
    rebuilt = grow_index(None, vecs, dim, "ivf-pq", params)  # same seed, same data: the same index
    assert np.array_equal(rebuilt.search(queries, 10)[1], approx)
    with pytest.raises(ValueError, match="nbits"):
        check_index_params("ivf-pq", {"nbits": 20})


def test_ivf_pq_library_round_trip(tmp_path, embedder):
    rng = np.random.default_rng(0)
    crops, ids = [], []
    for name in SCENES:
        img = load_photo(name)
        for j in range(10):
            y, x = rng.integers(0, img.shape[0] - 96), rng.integers(0, img.shape[1] - 96)
            crops.append(np.ascontiguousarray(img[y : y + 96, x : x + 96]))
            ids.append(f"{name}-{j}")
    vectors = embedder.embed(crops)
    queries = [vectors[i] + 0.01 * rng.standard_normal(vectors.shape[1]).astype(np.float32) for i in (0, 17, 42, 79)]
    # 80 vectors train 2 lists of a 1-bit PQ; re-ranking 80 candidates makes top-1 exact whatever the codes
    params = {"nlist": 2, "m": 64, "nbits": 1, "nprobe": 2, "rerank": 80}
    with ReferenceLibrary.create(tmp_path / "pq", embedder, "ivf-pq", **params) as lib:
        assert len(lib.add(crops, ids=ids)) == 80
    with ReferenceLibrary.open(tmp_path / "pq", embedder) as lib:
        assert lib.index_type == "ivf-pq" and type(lib._indexes["default"]).__name__ == "IndexRefine"
        assert [lib.search(q, k=1, threshold=float("-inf"))[0].id for q in queries] == [
            ids[i] for i in (0, 17, 42, 79)
        ]


def test_ivf_stays_exact_until_it_can_train(tmp_path, embedder):
    with ReferenceLibrary.create(tmp_path / "lib", embedder, "ivf") as lib:
        add_photos(lib, SCENES[:3])
        assert type(lib._indexes["default"]).__name__ == "IndexFlatIP"


def test_duplicates_skipped_and_bad_inputs_reported(tmp_path, embedder):
    save_image(tmp_path / "coffee.png", first_view("coffee"))
    (tmp_path / "broken.png").write_bytes((tmp_path / "coffee.png").read_bytes()[:200])
    with ReferenceLibrary.create(tmp_path / "lib", embedder) as lib:
        first = lib.add([tmp_path / "coffee.png", first_view("camera")])
        again = lib.add(
            [tmp_path / "coffee.png", first_view("camera"), tmp_path / "broken.png", tmp_path / "nope.png"]
        )
        assert len(first) == 2 and list(again) == [] and len(lib) == 2
        assert [e for _, e in again.duplicates] == list(first)
        assert len(again.errors) == 2 and all("\n" not in e for e in again.errors)
        assert "broken.png" in again.errors[0] and "nope.png: no such file" in again.errors[1]
        taken = lib.add([first_view("astronaut")], ids=[first[0]])
        assert list(taken) == [] and "already taken" in taken.errors[0]


def test_failed_write_leaves_the_previous_library_intact(tmp_path, embedder, monkeypatch):
    import retrieval.library_store as store  # where a library's writes happen

    with ReferenceLibrary.create(tmp_path / "lib", embedder) as lib:
        add_photos(lib, SCENES[:2])
    real = store.write_bytes_atomic

    def crash(path, data):
        if path.suffix == ".faiss":
            raise OSError("disk full (simulated)")
        real(path, data)

    monkeypatch.setattr(store, "write_bytes_atomic", crash)
    with ReferenceLibrary.open(tmp_path / "lib", embedder) as lib:
        with pytest.raises(OSError, match="simulated"):
            add_photos(lib, SCENES[2:4])
        assert len(lib) == 2  # the transaction rolled back
        assert lib.search(first_view("coffee"), k=5, threshold=float("-inf"))[0].id == "coffee"
    monkeypatch.setattr(store, "write_bytes_atomic", real)
    with ReferenceLibrary.open(tmp_path / "lib", embedder) as lib:
        assert len(lib) == 2 and len(lib.search(first_view("camera"), k=5, threshold=float("-inf"))) == 2
        assert len(add_photos(lib, SCENES[2:4])) == 2 and len(lib) == 4
    assert len(list((tmp_path / "lib").glob("index.*.faiss"))) <= 2


def test_concurrent_writers_lose_nothing(tmp_path, embedder):
    # Separate connections (as separate processes would hold) adding at once; SQLite's write lock serialises them.
    import threading

    ReferenceLibrary.create(tmp_path / "lib", embedder).close()
    img = load_photo("astronaut")
    errors = []

    def writer(k: int) -> None:
        try:
            with ReferenceLibrary.open(tmp_path / "lib", embedder) as lib:
                for j in range(3):
                    y, x = 40 * k + 7 * j, 30 * j + k
                    lib.add([np.ascontiguousarray(img[y : y + 64, x : x + 64])], category=f"c{j % 2}")
                lib.threshold = 0.6 + 0.01 * k
        except Exception as e:  # surfaced in the main thread below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with ReferenceLibrary.open(tmp_path / "lib", embedder) as lib:
        assert len(lib) == 12 and lib.counts() == {"c0": 8, "c1": 4}
        assert {c: int(i.ntotal) for c, i in lib._indexes.items()} == {"c0": 8, "c1": 4}
        assert 0.6 <= lib.threshold <= 0.63


# ----- registry


def test_registry_names_and_errors():
    assert load_embedder("global").name == "global"
    assert load_embedder("retrieval.embedders:GlobalDescriptorEmbedder").name == "global"
    with pytest.raises(ValueError, match=r"unknown embedder 'clip'; choose one of \['global'\]"):
        load_embedder("clip")
    with pytest.raises(ValueError, match="needs a model id"):
        load_embedder("hf:")
    with pytest.raises(ValueError, match="cannot load embedder"):
        load_embedder("retrieval.embedders:Nope")


def test_hf_embedder_without_torch_names_the_extra(monkeypatch):
    from retrieval.hf import HFEmbedder

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'reason-restore\[vlm\]'"):
        HFEmbedder("facebook/dinov2-small")


# ----- CLI


@pytest.fixture()
def refs_dir(tmp_path) -> Path:
    d = tmp_path / "refs"
    d.mkdir()
    for name in SCENES[:5]:
        save_image(d / f"{name}.png", first_view(name))
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return d


def test_cli_build_add_query(tmp_path, refs_dir):
    index = tmp_path / "lib"
    res = runner.invoke(index_app, ["build", str(refs_dir), "--index", str(index), "--json"])
    assert res.exit_code == 1, res.output  # the corrupt file is reported, the rest is indexed
    summary = json.loads(res.stdout)
    assert summary["added"] == 5 and summary["entries"] == 5 and len(summary["errors"]) == 1
    assert "corrupt.jpg" in summary["errors"][0] and "corrupt.jpg" in res.stderr
    assert (index / "library.json").is_file() and not list(tmp_path.glob(".lib.*"))

    extra = tmp_path / "extra"
    extra.mkdir()
    save_image(extra / "chelsea.png", first_view("chelsea"))
    res = runner.invoke(index_app, ["add", str(extra), str(refs_dir / "coffee.png"), "--index", str(index),
                                    "--category", "cats", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["added"] == 1 and len(summary["duplicates"]) == 1 and summary["categories"] == {
        "cats": 1, "default": 5
    }  # fmt: skip

    save_image(tmp_path / "query.png", second_view("coffee"))
    res = runner.invoke(index_app, ["query", str(tmp_path / "query.png"), "--index", str(index), "-k", "3",
                                    "--threshold", "-1", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    refs = [Reference.model_validate(r) for r in doc["references"]]
    assert len(refs) == 3 and Path(refs[0].path).name == "coffee.png" and doc["threshold"] == -1

    res = runner.invoke(index_app, ["query", str(tmp_path / "query.png"), "--index", str(index), "--category", "cats"])
    assert res.exit_code == 0 and ("chelsea" in res.stdout or "no reference scores" in res.stdout)
    res = runner.invoke(index_app, ["query", str(tmp_path / "query.png"), "--index", str(index), "--threshold", "-1"])
    assert res.exit_code == 0 and "rank" in res.stdout and "default" in res.stdout  # a table (paths may fold)


def test_cli_errors_are_one_line_and_nonzero(tmp_path, refs_dir):
    index = tmp_path / "lib"
    res = runner.invoke(index_app, ["query", str(refs_dir / "coffee.png"), "--index", str(index)])
    assert res.exit_code == 2 and "not a reference library" in flat(res.output)
    assert runner.invoke(index_app, ["build", str(refs_dir), "--index", str(index)]).exit_code == 1
    res = runner.invoke(index_app, ["build", str(refs_dir), "--index", str(index)])
    assert res.exit_code == 2 and "--overwrite" in flat(res.output)
    res = runner.invoke(index_app, ["build", str(refs_dir), "--index", str(index), "--overwrite", "--index-type",
                                    "hnsw", "--json"])  # fmt: skip
    assert res.exit_code == 1 and json.loads(res.stdout)["index_type"] == "hnsw"
    res = runner.invoke(index_app, ["query", str(tmp_path / "missing.png"), "--index", str(index)])
    assert res.exit_code == 2 and res.stderr.strip() == f"error: {tmp_path / 'missing.png'}: no such file"
    res = runner.invoke(index_app, ["build", str(refs_dir), "--index", str(tmp_path / "x"), "--embedder", "nope"])
    assert res.exit_code == 2 and "unknown embedder 'nope'" in flat(res.output)
    res = runner.invoke(index_app, ["build", str(refs_dir), "--index", str(tmp_path / "y"), "--index-type", "lsh"])
    assert res.exit_code == 2 and "unknown index type 'lsh'" in flat(res.output) and not (tmp_path / "y").exists()


# ----- transformers embedders (tiny models built in-process; skipped without torch / transformers)


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-dinov2")
    config = transformers.Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=32, patch_size=8
    )
    transformers.Dinov2Model(config).save_pretrained(path)
    BitImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def test_hf_embedder_on_tiny_dinov2(tiny_dinov2, tmp_path):
    from retrieval.hf import HFEmbedder

    emb = load_embedder(f"hf:{tiny_dinov2}")
    assert isinstance(emb, HFEmbedder) and isinstance(emb, Embedder)
    assert emb.kind == "dinov2" and emb.dim == 32 and emb.name == f"hf:{tiny_dinov2.resolve()}"
    assert emb.version.startswith(f"{tiny_dinov2.name}@local-")
    imgs = [load_photo(n) for n in ("astronaut", "coffee")]
    v = emb.embed(imgs)
    assert v.shape == (2, 32) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb.embed(imgs), v, atol=1e-6)
    assert HFEmbedder(str(tiny_dinov2), pooling="mean").version.endswith("+mean")

    with ReferenceLibrary.create(tmp_path / "lib", emb) as lib:
        lib.add(imgs, ids=["astronaut", "coffee"])
    with ReferenceLibrary.open(tmp_path / "lib") as lib:  # reloads hf:<path> from library.json
        assert lib.embedder.name == emb.name
        assert lib.search(imgs[1], k=1, threshold=float("-inf"))[0].id == "coffee"


# ----- scale benchmark (bench/retrieval_scale.py): synthetic libraries fitted to real embeddings


@pytest.fixture(scope="module")
def scale_bench():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "retrieval_scale.py"
    spec = importlib.util.spec_from_file_location("retrieval_scale", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fitted(scale_bench, embedder):
    return scale_bench.EmbeddingModel.fit(400, 8, 0, embedder)


def test_scale_model_reproduces_the_structure_of_real_embeddings(scale_bench, fitted):
    model, held_out = fitted
    real = scale_bench.structure(held_out)
    synth = scale_bench.structure(model.draw(len(held_out), np.random.default_rng(1)))
    # concentration and neighbour similarities of the descriptor (random pairs ~0.7) are what makes search hard
    for key in ("mean_cos", "nn_cos", "cos10"):
        assert abs(synth[key] - real[key]) < 0.05, (key, real[key], synth[key])
    assert 0.67 < synth["dims90"] / real["dims90"] < 1.5
    # an isotropic blob mixture (what the benchmark used before) is nowhere near: random pairs are orthogonal
    rng = np.random.default_rng(2)
    blobs = rng.standard_normal((8, model.dim))[rng.integers(0, 8, len(held_out))]
    blobs += rng.standard_normal(blobs.shape)
    blobs /= np.linalg.norm(blobs, axis=1, keepdims=True)
    assert abs(scale_bench.structure(blobs)["mean_cos"] - real["mean_cos"]) > 0.5
    # chunks are seeded: the same rows every time, so the ground truth and each index see one library
    assert np.array_equal(model.chunk(3, 10), model.chunk(3, 10))
    assert not np.array_equal(model.chunk(3, 10), model.chunk(4, 10))
    q = model.queries(20, np.random.default_rng(3))
    assert q.shape == (20, model.dim) and np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)


def test_scale_ground_truth_is_exact_search(scale_bench, fitted, monkeypatch):
    import faiss

    model, _ = fitted
    monkeypatch.setattr(scale_bench, "CHUNK", 700)  # several chunks, the last one partial
    total = 2500
    lib = np.concatenate(list(model.chunks(total)))
    queries = model.queries(15, np.random.default_rng(4))
    exact = faiss.IndexFlatIP(model.dim)
    exact.add(lib)
    _, want = exact.search(queries, scale_bench.K)
    assert np.array_equal(scale_bench.ground_truth(model, total, queries), want)


def test_scale_benchmark_writes_its_table(scale_bench, tmp_path):
    out = tmp_path / "scale.json"
    argv = ["--n", "3000", "--types", "flat", "hnsw", "--queries", "20", "--fit-crops", "120", "--modes", "4",
            "--build-threads", "1", "--out", str(out)]  # fmt: skip
    assert scale_bench.main(argv) == 0
    doc = json.loads(out.read_text())
    rows = {(r["type"], json.dumps(r["search"])): r for r in doc["rows"]}
    flat_row = rows[("flat", "{}")]
    assert flat_row["recall@10"] == 1.0 and flat_row["bytes_per_vector"] >= 4 * doc["setup"]["dim"]
    assert all(r["recall@10"] > 0.8 and r["p50_ms"] <= r["p99_ms"] for r in doc["rows"])
    assert set(doc["structure"]) == {"real", "model", "queries"}
