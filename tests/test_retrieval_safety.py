"""Hostile and corrupt reference libraries: nothing named in a file is imported, nothing the user owns is deleted,
and every damaged file gives one line naming it and the fix (LibraryError in Python, ``error: ...`` and exit 2 on
the command line), never a traceback or a hang.
"""

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest
from typer.testing import CliRunner

from agent.cli.index import index_app
from reasoner.imageio import ImageLoadError, save_image
from retrieval.embedders import GlobalDescriptorEmbedder
from retrieval.faiss_index import check_index_params, grow_index, read_index
from retrieval.library import LibraryError, ReferenceLibrary, library_files
from retrieval.registry import is_registered, load_embedder

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def no_hang(fn: Callable, *args, seconds: float = 60, **kwargs):
    """``fn(*args, **kwargs)``, failing the test instead of hanging if it blocks (on a FIFO, say)."""
    out: dict = {}

    def run() -> None:
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as e:  # re-raised in the test's thread
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} blocked for {seconds} s")
    if "error" in out:
        raise out["error"]
    return out.get("value")


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` with its content hash (regular files) or kind; never opens anything else."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root, name)
            mode = os.lstat(p).st_mode
            rel = p.relative_to(folder).as_posix()
            if stat.S_ISLNK(mode):
                out[rel] = "link:" + os.readlink(p)
            elif stat.S_ISREG(mode):
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif not stat.S_ISDIR(mode):
                out[rel] = "special"
    return out


def one_error_line(res) -> str:
    """The single ``error: ...`` line a refused command prints; asserts exit 2, no traceback, nothing else."""
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def random_images(folder: Path, n: int = 3, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        img = rng.random((40, 48, 3)).astype(np.float32)
        paths.append(save_image(folder / f"ref{seed}_{i}.png", img))
    return paths


@pytest.fixture(scope="module")
def embedder() -> GlobalDescriptorEmbedder:
    return GlobalDescriptorEmbedder()


@pytest.fixture(scope="module")
def base(tmp_path_factory, embedder) -> tuple[Path, Path]:
    """A three-image library built from files in a separate folder (copied per test), and that folder."""
    top = tmp_path_factory.mktemp("base")
    refs = random_images(top / "refs")
    with ReferenceLibrary.create(top / "lib", embedder) as lib:
        assert len(lib.add(refs)) == 3
    return top / "lib", top / "refs"


@pytest.fixture()
def lib(base, tmp_path) -> Path:
    return Path(shutil.copytree(base[0], tmp_path / "lib"))


@pytest.fixture()
def query(base) -> Path:
    return sorted(base[1].iterdir())[0]


def exercise(root: Path, embedder=None) -> LibraryError:
    """Open, count, search and add to a library until it raises; only LibraryError may come out."""
    steps = [
        ("open", lambda lib: None),
        ("len", len),
        ("categories", lambda lib: lib.categories),
        ("search", lambda lib: lib.search(np.full(lib.embedder.dim, lib.embedder.dim**-0.5, np.float32))),
        ("add", lambda lib: lib.add([np.full((24, 24, 3), 0.5, np.float32)])),
    ]
    try:
        lib = no_hang(ReferenceLibrary.open, root, embedder)
    except LibraryError as e:
        return e
    except Exception as e:
        pytest.fail(f"open raised {type(e).__name__} (not LibraryError): {e}")
    with lib:
        for name, step in steps[1:]:
            try:
                no_hang(step, lib)
            except LibraryError as e:
                return e
            except Exception as e:
                pytest.fail(f"{name} raised {type(e).__name__} (not LibraryError): {e}")
    pytest.fail("the damaged library was used without any error")


def edit_meta(root: Path, fn: Callable[[dict], object]) -> None:
    meta = json.loads((root / "library.json").read_text())
    fn(meta)
    (root / "library.json").write_text(json.dumps(meta))


def set_meta(*keys_and_value):
    """An edit of library.json setting ``meta[k1][k2]... = value``."""
    *keys, value = keys_and_value

    def fn(meta: dict) -> None:
        d = meta
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return lambda root: edit_meta(root, fn)


def sql(*statements: str):
    def fn(root: Path) -> None:
        db = sqlite3.connect(root / "entries.sqlite")
        for s in statements:
            db.execute(s)
        db.commit()
        db.close()

    return fn


def write_bytes(name: str, data: bytes):
    def fn(root: Path) -> None:
        (root / name).unlink(missing_ok=True)
        (root / name).write_bytes(data)

    return fn


def replace_with(name: str, kind: str):
    def fn(root: Path) -> None:
        p = root / name
        p.unlink()
        if kind == "fifo":
            os.mkfifo(p)
        elif kind == "dir":
            p.mkdir()

    def link_outside(root: Path) -> None:
        # the genuine file, moved out of the folder and linked back: its content is fine, its place is not
        p = root / name
        p.rename(root.parent / f"outside-{name}")
        p.symlink_to(root.parent / f"outside-{name}")

    return link_outside if kind == "outside-link" else fn


def faiss_file(make: Callable[[], faiss.Index]):
    def fn(root: Path) -> None:
        (root / "index.default.1.faiss").write_bytes(faiss.serialize_index(make()).tobytes())

    return fn


def stored_vectors(root: Path) -> np.ndarray:
    index = faiss.read_index(str(root / "index.default.1.faiss"))
    return index.reconstruct_n(0, index.ntotal)


def vectors_with(value: float, row: int = 0):
    """The library's own flat index with one coordinate of one stored vector set to ``value``."""

    def fn(root: Path) -> None:
        x = stored_vectors(root)
        x[row, 5] = value
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        (root / "index.default.1.faiss").write_bytes(faiss.serialize_index(index).tobytes())

    return fn


def truncate(name: str, size: int):
    def fn(root: Path) -> None:
        data = (root / name).read_bytes()
        (root / name).write_bytes(data[:size])

    return fn


def append(name: str, data: bytes):
    def fn(root: Path) -> None:
        with open(root / name, "ab") as f:
            f.write(data)

    return fn


def _unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _flat(dim: int, n: int, metric=faiss.METRIC_INNER_PRODUCT) -> faiss.Index:
    index = faiss.IndexFlat(dim, metric)
    index.add(_unit(n, dim))
    return index


def _hnsw(dim: int, n: int) -> faiss.Index:
    index = faiss.IndexHNSWFlat(dim, 4, faiss.METRIC_INNER_PRODUCT)
    index.add(_unit(n, dim))
    return index


DIM = GlobalDescriptorEmbedder().dim
rng_bytes = np.random.default_rng(7).bytes

# (id, damage, file the one-line error must name). Each damage leaves everything else as the clean build wrote it.
CORRUPT = [
    # ----- index.default.1.faiss
    pytest.param(write_bytes("index.default.1.faiss", rng_bytes(300)), "index.default.1.faiss", id="faiss-random"),
    pytest.param(truncate("index.default.1.faiss", 1000), "index.default.1.faiss", id="faiss-truncated"),
    pytest.param(write_bytes("index.default.1.faiss", b""), "index.default.1.faiss", id="faiss-empty"),
    # a valid FAISS file with padding after the vectors: the flat layout's size is exact
    pytest.param(append("index.default.1.faiss", b"\0" * 8), "index.default.1.faiss", id="faiss-trailing-bytes"),
    # valid FAISS files that are not what entries.sqlite says: another dim, another count, another metric
    pytest.param(faiss_file(lambda: _flat(8, 3)), "index.default.1.faiss", id="faiss-other-dim"),
    pytest.param(faiss_file(lambda: _flat(DIM, 4)), "index.default.1.faiss", id="faiss-more-vectors"),
    pytest.param(faiss_file(lambda: _flat(DIM, 3, faiss.METRIC_L2)), "index.default.1.faiss", id="faiss-l2-metric"),
    # an index type a flat library never writes (HNSW), with the right dim and count
    pytest.param(faiss_file(lambda: _hnsw(DIM, 3)), "index.default.1.faiss", id="faiss-other-type"),
    pytest.param(replace_with("index.default.1.faiss", "fifo"), "index.default.1.faiss", id="faiss-is-fifo"),
    pytest.param(replace_with("index.default.1.faiss", "dir"), "index.default.1.faiss", id="faiss-is-directory"),
    pytest.param(
        replace_with("index.default.1.faiss", "outside-link"), "index.default.1.faiss", id="faiss-symlink-outside"
    ),
    # ----- entries.sqlite
    pytest.param(write_bytes("entries.sqlite", rng_bytes(4096)), "entries.sqlite", id="sqlite-random"),
    pytest.param(truncate("entries.sqlite", 2048), "entries.sqlite", id="sqlite-truncated"),
    pytest.param(write_bytes("entries.sqlite", b""), "entries.sqlite", id="sqlite-empty"),
    pytest.param(
        sql("DROP TABLE entries", "DROP TABLE indexes", "DROP TABLE meta"), "entries.sqlite", id="sqlite-no-tables"
    ),
    # a hostile schema: the table replaced by a view, or a trigger waiting for the next write
    pytest.param(
        sql("ALTER TABLE entries RENAME TO e2", "CREATE VIEW entries AS SELECT * FROM e2"),
        "entries.sqlite",
        id="sqlite-view",
    ),
    pytest.param(
        sql("CREATE TRIGGER t AFTER INSERT ON entries BEGIN DELETE FROM entries; END"),
        "entries.sqlite",
        id="sqlite-trigger",
    ),
    pytest.param(replace_with("entries.sqlite", "fifo"), "entries.sqlite", id="sqlite-is-fifo"),
    pytest.param(replace_with("entries.sqlite", "dir"), "entries.sqlite", id="sqlite-is-directory"),
    pytest.param(replace_with("entries.sqlite", "outside-link"), "entries.sqlite", id="sqlite-symlink-outside"),
    pytest.param(lambda root: (root / "entries.sqlite").unlink(), "entries.sqlite", id="sqlite-missing"),
    # ----- rows that disagree with each other or with the files
    pytest.param(sql("UPDATE indexes SET ntotal = 7"), "entries.sqlite", id="ntotal-disagrees"),
    pytest.param(sql("DELETE FROM entries WHERE row = 1"), "entries.sqlite", id="entry-missing"),
    pytest.param(sql("UPDATE entries SET row = row + 10"), "entries.sqlite", id="rows-shifted"),
    pytest.param(sql("UPDATE entries SET row = 'x' WHERE row = 2"), "entries.sqlite", id="row-not-integer"),
    pytest.param(
        sql("UPDATE entries SET category = 'other' WHERE row = 2"), "entries.sqlite", id="category-without-index"
    ),
    pytest.param(
        sql("UPDATE indexes SET file = 'index.default.9.faiss'"), "index.default.9.faiss", id="index-file-missing"
    ),
    # file names that would read outside the folder
    pytest.param(sql("UPDATE indexes SET file = '../outside.faiss'"), "entries.sqlite", id="file-traversal"),
    pytest.param(sql("UPDATE indexes SET file = '/etc/passwd'"), "entries.sqlite", id="file-absolute"),
    pytest.param(sql("UPDATE indexes SET ntotal = 'three'"), "entries.sqlite", id="ntotal-not-integer"),
    pytest.param(sql("UPDATE indexes SET kind = 'lsh'"), "entries.sqlite", id="kind-unknown"),
    pytest.param(sql("UPDATE meta SET value = 'x'"), "entries.sqlite", id="generation-not-integer"),
    pytest.param(sql("DELETE FROM meta"), "entries.sqlite", id="generation-missing"),
    # ----- library.json: not JSON, not an object, wrong types and ranges
    pytest.param(write_bytes("library.json", rng_bytes(200)), "library.json", id="meta-random"),
    pytest.param(write_bytes("library.json", b"{"), "library.json", id="meta-truncated"),
    pytest.param(write_bytes("library.json", b"[" * 100_000), "library.json", id="meta-deep-nesting"),
    pytest.param(write_bytes("library.json", b" " * (2 << 20) + b"{}"), "library.json", id="meta-huge"),
    pytest.param(write_bytes("library.json", b"{}"), "library.json", id="meta-empty-object"),
    pytest.param(write_bytes("library.json", b"[]"), "library.json", id="meta-list"),
    pytest.param(write_bytes("library.json", b'"x"'), "library.json", id="meta-string"),
    pytest.param(write_bytes("library.json", b"null"), "library.json", id="meta-null"),
    pytest.param(replace_with("library.json", "fifo"), "library.json", id="meta-is-fifo"),
    pytest.param(replace_with("library.json", "dir"), "library.json", id="meta-is-directory"),
    pytest.param(replace_with("library.json", "outside-link"), "library.json", id="meta-symlink-outside"),
    pytest.param(set_meta("schema_version", 1.0), "library.json", id="version-number"),
    pytest.param(set_meta("schema_version", "2.0"), "schema 2.0", id="version-newer-major"),
    pytest.param(set_meta("embedder", "global"), "library.json", id="embedder-not-object"),
    pytest.param(set_meta("embedder", "extra", 1), "library.json", id="embedder-extra-key"),
    pytest.param(set_meta("embedder", "dim", str(DIM)), "library.json", id="dim-string"),
    pytest.param(set_meta("embedder", "dim", 10**12), "library.json", id="dim-huge"),
    pytest.param(set_meta("embedder", "dim", 0), "library.json", id="dim-zero"),
    pytest.param(set_meta("embedder", "dim", True), "library.json", id="dim-bool"),
    pytest.param(set_meta("embedder", "dim", float(DIM)), "library.json", id="dim-float"),
    pytest.param(set_meta("embedder", "version", 4), "library.json", id="version-not-string"),
    pytest.param(set_meta("threshold", -5), "library.json", id="threshold-negative"),
    pytest.param(set_meta("threshold", float("nan")), "library.json", id="threshold-nan"),
    pytest.param(set_meta("threshold", float("inf")), "library.json", id="threshold-inf"),
    pytest.param(set_meta("threshold", "0.5"), "library.json", id="threshold-string"),
    pytest.param(set_meta("index", "type", "lsh"), "library.json", id="index-type-unknown"),
    pytest.param(set_meta("index", "params", {"nprobe": "x"}), "library.json", id="index-params-bad"),
    pytest.param(set_meta("index", "params", None), "library.json", id="index-params-null"),
    # a parameter that would size FAISS buffers: HNSW with M = 2**31 neighbours a vector
    pytest.param(set_meta("index", {"type": "hnsw", "params": {"M": 2**31}}), "library.json", id="index-params-huge"),
    pytest.param(set_meta("created", ["x"]), "library.json", id="created-not-string"),
    # ----- stored vectors that are not finite: scores would be NaN or inf, ranked as garbage
    pytest.param(vectors_with(float("nan")), "index.default.1.faiss", id="vector-nan"),
    pytest.param(vectors_with(float("inf")), "index.default.1.faiss", id="vector-inf"),
    pytest.param(vectors_with(float("-inf"), row=2), "index.default.1.faiss", id="vector-minus-inf"),
]


@pytest.mark.parametrize(("damage", "named"), CORRUPT)
def test_damaged_library_gives_one_line_naming_the_file(lib, query, damage, named):
    damage(lib)
    err = exercise(lib)
    msg = str(err)
    assert "\n" not in msg and named in msg, msg
    if not named.startswith("schema"):  # a newer schema asks for an upgrade instead
        assert "rnr index build --overwrite" in msg, msg

    before = snapshot(lib.parent)
    res = no_hang(runner.invoke, index_app, ["query", str(query), "--index", str(lib)])
    assert named in one_error_line(res)
    res = no_hang(runner.invoke, index_app, ["add", str(query), "--index", str(lib)])
    assert named in one_error_line(res)
    assert snapshot(lib.parent) == before  # reading a damaged library changes nothing


def test_damaged_library_opens_again_once_repaired(lib, base):
    # The checks refuse damage, not libraries: a clean copy still opens and searches after a refusal.
    vectors_with(float("nan"))(lib)
    with pytest.raises(LibraryError):
        ReferenceLibrary.open(lib)
    shutil.copy(base[0] / "index.default.1.faiss", lib / "index.default.1.faiss")
    with ReferenceLibrary.open(lib) as opened:
        assert len(opened.search(stored_vectors(lib)[1], k=3, threshold=float("-inf"))) == 3


# ----- embedder names read from library.json are never imported

PROBE = """
from pathlib import Path
Path({marker!r}).write_text("imported")


class Boom:
    def __init__(self, *args, **kwargs):
        Path({marker!r}).write_text("called")
"""

HOSTILE_NAMES = [
    pytest.param("sys:exit", id="sys-exit"),  # exited 0 silently: the "embedder" was sys.exit()
    pytest.param("hostile_probe:Boom", id="module-on-path"),  # importing a module runs its code
    pytest.param("os.path:join", id="stdlib-function"),
    # a dotted path from a file is refused even when it names the right class
    pytest.param("retrieval.embedders:GlobalDescriptorEmbedder", id="dotted-path-to-real-class"),
    pytest.param(" global", id="padded-name"),
    pytest.param("global\n", id="control-character"),
    pytest.param("", id="empty"),
    pytest.param(123, id="number"),
    pytest.param(None, id="null"),
    pytest.param(["global"], id="list"),
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_embedder_name_from_library_json_is_never_imported(lib, query, tmp_path, monkeypatch, name):
    marker = tmp_path / "probe-ran"
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "hostile_probe.py").write_text(PROBE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path / "probe"))
    set_meta("embedder", "name", name)(lib)

    with pytest.raises(LibraryError) as err:
        ReferenceLibrary.open(lib)
    assert "\n" not in str(err.value) and "library.json" in str(err.value)
    res = runner.invoke(index_app, ["query", str(query), "--index", str(lib)])
    assert "library.json" in one_error_line(res)
    assert not marker.exists() and "hostile_probe" not in sys.modules


def test_os_abort_in_library_json_does_not_kill_rnr(lib, query):
    # Resolved before any other check, "os:abort" killed the process (SIGABRT); run apart so a regression cannot
    # take the test session down with it.
    set_meta("embedder", "name", "os:abort")(lib)
    code = "import sys; from agent.cli.index import index_app; index_app(sys.argv[1:])"
    proc = subprocess.run(
        [sys.executable, "-c", code, "query", str(query), "--index", str(lib)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "library.json" in lines[0] and "os:abort" in lines[0]


CUSTOM = """
import numpy as np


class TinyEmbedder:
    name, version, dim = "custom-tiny", "1", 4

    def embed(self, images):
        v = np.stack([np.asarray(i, np.float32).reshape(-1, 3).mean(0).tolist() + [1.0] for i in images])
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
"""


def test_dotted_embedder_stays_allowed_when_a_person_passes_it(tmp_path, monkeypatch, base):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "custom_emb.py").write_text(CUSTOM)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    refs = base[1]

    # Python: create and open with the dotted path; the recorded name ("custom-tiny") is not imported on its own
    with ReferenceLibrary.create(tmp_path / "py", "custom_emb:TinyEmbedder") as lib:
        assert len(lib.add(sorted(refs.iterdir()))) == 3
    with pytest.raises(LibraryError, match="pass that embedder explicitly"):
        ReferenceLibrary.open(tmp_path / "py")
    with ReferenceLibrary.open(tmp_path / "py", embedder="custom_emb:TinyEmbedder") as lib:
        assert len(lib) == 3 and lib.embedder.name == "custom-tiny"
    with ReferenceLibrary.open(tmp_path / "py", embedder=load_embedder("custom_emb:TinyEmbedder")) as lib:
        assert len(lib.search(sorted(refs.iterdir())[0], threshold=float("-inf"))) == 3
    # a registered embedder given as its dotted path records the registry name and reopens by itself
    with ReferenceLibrary.create(tmp_path / "dotted", "retrieval.embedders:GlobalDescriptorEmbedder") as lib:
        assert lib.embedder.name == "global"
    ReferenceLibrary.open(tmp_path / "dotted").close()

    # command line: --embedder on `index build` takes a dotted path
    res = runner.invoke(
        index_app,
        ["build", str(refs), "--index", str(tmp_path / "cli"), "--embedder", "custom_emb:TinyEmbedder", "--json"],
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["embedder"] == "custom-tiny@1"


@pytest.mark.parametrize(
    ("name", "registered"),
    [
        ("global", True),  # the registry
        ("hf:facebook/dinov2-small", True),  # a transformers model, loaded without remote code
        ("hf:", False),  # no model
        ("retrieval.embedders:GlobalDescriptorEmbedder", False),  # an import path
        ("sys:exit", False),
        (None, False),
    ],
)
def test_registered_names(name, registered):
    assert is_registered(name) is registered
    if not registered and isinstance(name, str) and ":" in name and not name.startswith("hf:"):
        with pytest.raises(ValueError, match="only registered names"):
            load_embedder(name, allow_path=False)


def test_hf_embedder_never_trusts_remote_code(lib, monkeypatch):
    transformers = pytest.importorskip("transformers")
    seen = []

    def refuse(source, **kwargs):
        seen.append(kwargs)
        raise OSError(f"{source} is not a local folder and is not a valid model identifier")

    monkeypatch.setattr(transformers.AutoImageProcessor, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", refuse)
    set_meta("embedder", "name", "hf:someone/remote-code-model")(lib)
    with pytest.raises(LibraryError) as err:
        ReferenceLibrary.open(lib)  # a load failure of the recorded model is a LibraryError too
    msg = str(err.value)
    assert "\n" not in msg and "library.json" in msg and "someone/remote-code-model" in msg
    assert seen and all(kw.get("trust_remote_code") is False for kw in seen)


# ----- rnr index build --overwrite deletes only what reason-restore wrote


def add_array_copy(root: Path) -> Path:
    """Add an in-memory image, stored by the library as images/<sha>.png; returns that file."""
    with ReferenceLibrary.open(root) as opened:
        (entry,) = opened.add([np.full((20, 30, 3), 0.25, np.float32)], ids=["array"])
        return root / opened.get(entry)["path"]


def refs_inside(lib: Path, refs: Path) -> Path:
    # the reported bug: `rnr index build LIB/refs --index LIB --overwrite` deleted LIB/refs
    return Path(shutil.copytree(refs, lib / "refs"))


def refs_equal(lib: Path, refs: Path) -> Path:
    # photos lying directly in the library folder, indexed from there
    for p in refs.iterdir():
        shutil.copy(p, lib / p.name)
    return lib


def refs_equal_recursive(lib: Path, refs: Path) -> Path:
    # with -r the library's own stored copies become inputs too: the new library refers to them, so they stay
    refs_equal(lib, refs)
    add_array_copy(lib)
    return lib


def user_files_beside(lib: Path, refs: Path) -> Path:
    # notes, sub-folders, a photo of the user's in images/, and one named like a stored copy but not one
    (lib / "notes.txt").write_text("mine")
    (lib / "sub" / "deep").mkdir(parents=True)
    shutil.copy(next(refs.iterdir()), lib / "sub" / "deep" / "photo.png")
    add_array_copy(lib)
    (lib / "images" / "mine.png").write_bytes(b"user bytes")
    (lib / "images" / ("0" * 32 + ".png")).write_bytes(b"not what its name hashes to")
    (lib / "index.default.99.faiss.bak").write_text("a backup of the user's")
    return refs


OVERWRITE = [
    pytest.param(refs_inside, id="refs-inside-library"),
    pytest.param(refs_equal, id="refs-are-library-folder"),
    pytest.param(refs_equal_recursive, id="refs-are-library-folder-recursive"),
    pytest.param(user_files_beside, id="user-files-beside"),
]


@pytest.mark.parametrize("arrange", OVERWRITE)
def test_overwrite_keeps_what_reason_restore_did_not_write(lib, base, arrange):
    source = arrange(lib, base[1])
    owned_before = {p.relative_to(lib).as_posix() for p in library_files(lib)}
    theirs = {k: v for k, v in snapshot(lib).items() if k not in owned_before}
    (lib / ".index.default.3.faiss.0123456789ab.tmp").write_bytes(b"left by a crash")  # ours: goes
    (lib / "index.stale.2.faiss").write_bytes(b"an index no state names")  # ours: goes

    args = ["build", str(source), "--index", str(lib), "--overwrite", "--json"]
    res = runner.invoke(index_app, args + (["-r"] if arrange is refs_equal_recursive else []))
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    after = snapshot(lib)
    assert {k: after.get(k) for k in theirs} == theirs  # every file of the user's, byte for byte
    assert not (lib / "index.stale.2.faiss").exists() and not list(lib.glob(".*.tmp"))
    with ReferenceLibrary.open(lib) as opened:
        assert len(opened) == summary["entries"] >= 3
        for entry_id in summary["ids"]:
            assert opened.load_pixels(entry_id).ndim == 3  # every new entry's file is there
    for rel in owned_before:  # stored copies are ours: gone, unless the new library was built from them
        if rel.startswith("images/"):
            assert (lib / rel).exists() == (arrange is refs_equal_recursive), rel


def not_a_library(lib: Path) -> None:
    # a folder of photos: --overwrite must not touch it at all
    shutil.rmtree(lib)
    random_images(lib)


def foreign_library_json(lib: Path) -> None:
    # another program's library.json: not ours to replace
    (lib / "library.json").write_text(json.dumps({"format": "someone-else", "version": 3}))


def sqlite_is_a_folder(lib: Path) -> None:
    # something the project did not write, under a name the new library needs
    (lib / "entries.sqlite").unlink()
    (lib / "entries.sqlite").mkdir()
    (lib / "entries.sqlite" / "keep.txt").write_text("mine")


def images_link_outside(lib: Path) -> None:
    # writing stored copies through this link would land outside the folder
    (lib.parent / "elsewhere").mkdir()
    (lib / "images").symlink_to(lib.parent / "elsewhere")


def index_is_fifo(lib: Path) -> None:
    (lib / "index.default.1.faiss").unlink()
    os.mkfifo(lib / "index.default.1.faiss")


REFUSED_OVERWRITE = [
    pytest.param(not_a_library, "not a reference library", id="not-a-library"),
    pytest.param(foreign_library_json, "belongs to something else", id="foreign-library-json"),
    pytest.param(sqlite_is_a_folder, "entries.sqlite", id="sqlite-is-a-folder"),
    pytest.param(images_link_outside, "images", id="images-symlink-outside"),
    pytest.param(index_is_fifo, "index.default.1.faiss", id="index-file-is-fifo"),
]


@pytest.mark.parametrize(("arrange", "says"), REFUSED_OVERWRITE)
def test_overwrite_refuses_what_it_would_have_to_destroy(lib, base, arrange, says):
    arrange(lib)
    before = snapshot(lib.parent)
    res = no_hang(runner.invoke, index_app, ["build", str(base[1]), "--index", str(lib), "--overwrite"])
    assert says in one_error_line(res)
    assert snapshot(lib.parent) == before


def test_damaged_library_can_be_overwritten(lib, base):
    # The fix every corruption error names must work on the damage it names.
    (lib / "library.json").write_bytes(rng_bytes(100))
    (lib / "entries.sqlite").write_bytes(rng_bytes(4096))
    refs = refs_inside(lib, base[1])
    res = runner.invoke(index_app, ["build", str(refs), "--index", str(lib), "--overwrite", "--json"])
    assert res.exit_code == 0, res.output
    with ReferenceLibrary.open(lib) as opened:
        assert len(opened) == 3
    assert len(list(refs.iterdir())) == 3


# ----- non-finite vectors and scores


def _poison_ivf(index: faiss.Index) -> None:
    lists = index.invlists
    codes = faiss.rev_swig_ptr(lists.get_codes(0), lists.list_size(0) * index.code_size).view(np.float32)
    codes[3] = np.nan


def _poison_pq(index: faiss.Index) -> None:
    ivfpq = faiss.downcast_index(faiss.downcast_index(index.base_index).index)
    table = faiss.vector_to_array(ivfpq.pq.centroids)
    table[7] = np.inf
    faiss.copy_array_to_vector(table, ivfpq.pq.centroids)


def _poison_hnsw(index: faiss.Index) -> None:
    storage = faiss.downcast_index(index.storage)
    faiss.rev_swig_ptr(storage.get_xb(), index.ntotal * index.d)[11] = np.nan


# (index type, params, how a NaN or inf gets into what the index scores with)
NON_FINITE_INDEXES = [
    pytest.param("hnsw", {"M": 4}, _poison_hnsw, id="hnsw-vector"),
    pytest.param("ivf", {"nlist": 2}, _poison_ivf, id="ivf-inverted-list"),
    # ivf-pq codes are bytes; its trained tables carry the floats (dim 7 is padded to 8 for m=2)
    pytest.param("ivf-pq", {"nlist": 2, "m": 2, "nbits": 4}, _poison_pq, id="ivf-pq-codebook"),
]


@pytest.mark.parametrize(("index_type", "params", "poison"), NON_FINITE_INDEXES)
def test_non_finite_vectors_are_refused_on_read(tmp_path, index_type, params, poison):
    params = check_index_params(index_type, params)
    index = grow_index(None, _unit(700, 7), 7, index_type, params)
    faiss.write_index(index, str(tmp_path / "clean.faiss"))
    assert read_index(tmp_path / "clean.faiss", 7, 700, params, index_type).ntotal == 700
    poison(index)
    faiss.write_index(index, str(tmp_path / "bad.faiss"))
    with pytest.raises(ValueError, match="non-finite"):
        read_index(tmp_path / "bad.faiss", 7, 700, params, index_type)


def test_ivf_lists_must_hold_each_row_once(tmp_path):
    # A NaN vector added to an IVF index is counted in ntotal but filed in no list; search would never return it.
    params = check_index_params("ivf", {"nlist": 2})
    index = grow_index(None, _unit(700, 7), 7, "ivf", params)
    index.add(np.full((1, 7), np.nan, np.float32))
    faiss.write_index(index, str(tmp_path / "bad.faiss"))
    with pytest.raises(ValueError, match="once each"):
        read_index(tmp_path / "bad.faiss", 7, 701, params, "ivf")


class NaNEmbedder(GlobalDescriptorEmbedder):
    """The real embedder, except that it returns NaN: a broken model or a bad driver."""

    def embed(self, images):
        return np.full((len(images), self.dim), np.nan, np.float32)


def test_embedder_returning_nan_is_refused(lib, embedder):
    with ReferenceLibrary.open(lib, NaNEmbedder()) as opened:
        with pytest.raises(LibraryError, match="non-finite"):
            opened.search(np.full((24, 24, 3), 0.5, np.float32))
        result = opened.add([np.full((24, 24, 3), 0.5, np.float32)])
        assert list(result) == [] and "non-finite" in result.errors[0] and len(opened) == 3
    with ReferenceLibrary.open(lib, embedder) as opened:
        with pytest.raises(LibraryError, match="non-finite"):
            opened.search(np.full(embedder.dim, np.nan, np.float32))  # a query vector given directly


def test_non_finite_scores_are_refused_at_search(lib):
    # Last line of defence, for an index whose vectors could not be checked on read: scores must be finite.
    with ReferenceLibrary.open(lib) as opened:
        x = stored_vectors(lib)
        x[0] = 0
        x[0, 5] = np.inf  # scores +-inf (a NaN row FAISS would silently never return)
        bad = faiss.IndexFlatIP(x.shape[1])
        bad.add(x)
        opened._indexes["default"] = bad
        with pytest.raises(LibraryError) as err:
            opened.search(stored_vectors(lib)[1], threshold=float("-inf"))
        assert "non-finite scores" in str(err.value) and "index.default.1.faiss" in str(err.value)


# ----- command-line inputs: pixel limits; FIFOs, devices and outside symlinks refused unopened


def test_query_max_pixels(lib, query, monkeypatch):
    res = runner.invoke(index_app, ["query", str(query), "--index", str(lib), "--max-pixels", "100"])
    assert str(query) in one_error_line(res) and "100-pixel limit" in res.stderr
    monkeypatch.setenv("RNR_MAX_PIXELS", "100")  # the default comes from resolve_max_pixels: the variable counts
    res = runner.invoke(index_app, ["query", str(query), "--index", str(lib)])
    assert "100-pixel limit" in one_error_line(res)
    monkeypatch.delenv("RNR_MAX_PIXELS")
    res = runner.invoke(index_app, ["query", str(query), "--index", str(lib), "--max-pixels", "0"])
    assert "--max-pixels" in one_error_line(res)
    res = runner.invoke(index_app, ["query", str(query), "--index", str(lib), "--max-pixels", "2000", "--json"])
    assert res.exit_code == 0, res.output  # 48x40 = 1920 pixels fit


def refused_inputs(folder: Path, refs: Path) -> list[Path]:
    """A good image, a FIFO and symlinks leading out of ``folder``; returns the inputs and the refused paths."""
    folder.mkdir()
    shutil.copy(next(refs.iterdir()), folder / "good.png")
    os.mkfifo(folder / "pipe.png")
    (folder / "zero.png").symlink_to("/dev/zero")
    (folder / "outside.png").symlink_to(sorted(refs.iterdir())[1])
    return [folder / "pipe.png", folder / "zero.png", folder / "outside.png"]


@pytest.mark.parametrize("command", ["build", "add"])
def test_special_inputs_are_reported_and_skipped(lib, base, tmp_path, command):
    refused = refused_inputs(tmp_path / "in", base[1])
    index = lib if command == "add" else tmp_path / "new"
    res = no_hang(runner.invoke, index_app, [command, str(tmp_path / "in"), "--index", str(index), "--json"])
    assert res.exit_code == 1, res.output
    summary = json.loads(res.stdout)
    assert summary["inputs"] == 4 and len(summary["errors"]) == 3
    for path in refused:
        assert sum(str(path) in line for line in res.stderr.splitlines()) == 1  # one line each
    if command == "build":
        assert summary["added"] == 1
    else:  # good.png is a copy of a reference already in the library
        assert summary["added"] == 0 and len(summary["duplicates"]) == 1


def test_explicit_device_and_fifo_inputs_are_refused(lib, base, tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    good = sorted(base[1].iterdir())[0]
    args = ["add", str(good), str(tmp_path / "pipe.png"), "/dev/zero", "--index", str(lib), "--json"]
    res = no_hang(runner.invoke, index_app, args)
    assert res.exit_code == 1, res.output
    errors = json.loads(res.stdout)["errors"]
    assert len(errors) == 2 and "FIFO" in errors[0] and "/dev/zero" in errors[1] and "device" in errors[1]
    res = no_hang(runner.invoke, index_app, ["query", str(tmp_path / "pipe.png"), "--index", str(lib)])
    assert "FIFO" in one_error_line(res)


# ----- load_pixels on stored paths that are no longer what was indexed


def fifo_in_place(root: Path, stored: Path, outside: Path) -> None:
    stored.unlink()
    os.mkfifo(stored)


def device_path(root: Path, stored: Path, outside: Path) -> None:
    sql("UPDATE entries SET path = '/dev/zero' WHERE id = 'array'")(root)


def symlink_out(root: Path, stored: Path, outside: Path) -> None:
    # the same bytes, so the SHA-256 check alone would let it through
    stored.unlink()
    stored.symlink_to(outside)


def relative_traversal(root: Path, stored: Path, outside: Path) -> None:
    sql(f"UPDATE entries SET path = '../{outside.name}' WHERE id = 'array'")(root)


def absolute_now_symlink(root: Path, stored: Path, outside: Path) -> None:
    # indexed by its real path outside the library; that path has since become a link to another copy
    sql(f"UPDATE entries SET path = '{os.path.realpath(outside)}' WHERE id = 'array'")(root)
    moved = outside.with_name("moved.png")
    outside.rename(moved)
    outside.symlink_to(moved)


def path_not_text(root: Path, stored: Path, outside: Path) -> None:
    sql("UPDATE entries SET path = X'00ff' WHERE id = 'array'")(root)  # a blob: TEXT affinity keeps it one


LOAD_PIXELS = [
    pytest.param(fifo_in_place, "FIFO", id="fifo"),
    pytest.param(device_path, "device", id="device"),
    pytest.param(symlink_out, "outside the library folder", id="symlink-outside"),
    pytest.param(relative_traversal, "outside the library folder", id="relative-traversal"),
    pytest.param(absolute_now_symlink, "now a symlink", id="absolute-path-now-symlink"),
    pytest.param(path_not_text, "no usable path", id="path-not-text"),
]


@pytest.mark.parametrize(("damage", "says"), LOAD_PIXELS)
def test_load_pixels_refuses_special_and_escaping_paths(lib, tmp_path, damage, says):
    stored = add_array_copy(lib)
    outside = Path(shutil.copy(stored, tmp_path / "outside.png"))
    damage(lib, stored, outside)
    with ReferenceLibrary.open(lib) as opened:
        with pytest.raises(ImageLoadError) as err:
            no_hang(opened.load_pixels, "array")
    assert "\n" not in str(err.value) and says in str(err.value), str(err.value)


def test_load_pixels_follows_symlinks_that_stay_inside(lib):
    # Not over-refusing: a link to another file inside the library folder is fine.
    stored = add_array_copy(lib)
    stored.rename(lib / "images" / "real.png")
    stored.symlink_to(lib / "images" / "real.png")
    with ReferenceLibrary.open(lib) as opened:
        assert opened.load_pixels("array").shape == (20, 30, 3)
