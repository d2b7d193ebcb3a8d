"""``rnr ui`` over plain HTTP, as a nosy client of the port or another site's page would talk to it.

Two sessions run end to end (the victim first, then the attacker); the attacker then asks for the checkpoint
database, the work arrays and the victim's outputs by every path it can form, knowing the work folder's layout and
even the victim's thread id, and sends uploads and calls with foreign ``Origin``/``Referer``/``Host`` headers.
Requests go out byte for byte as written (``http.client``: no client-side normalisation of ``..`` or escapes).
"""

import http.client
import json
import os
import re
import secrets
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("gradio")
httpx = pytest.importorskip("httpx")

#: The pixel limit the test server runs with (``rnr ui --max-pixels``).
LIMIT = 4_000_000
#: Leading bytes of the private files: none of them may come back in any refused response.
MAGIC = (b"SQLite format 3\x00", b"\x93NUMPY")
#: The on_restore inputs after the photo: reasoner, its model, scorer, its model, restorer, its model, library,
#: attempts, the session (server-side state), the diagnosis table (empty: nothing diagnosed yet, the run goes
#: straight through to export), the overall strength and one strength per kind.
RUN_ARGS = ["measure", "", "measure", "", "classical", "", "", 1, None,
            {"headers": ["problem", "present", "severity (0-1)", "settings"], "data": [], "metadata": None},
            1.0, *[1.0] * 8]  # fmt: skip


def bomb_png(path: Path, width: int = 11500, height: int = 11500) -> Path:
    """A valid 1-bit PNG of ``width``x``height`` (132 megapixels by default) that is a few tens of KB on disk."""
    row = b"\0" * (1 + (width + 7) // 8)
    data = zlib.compress(row * height, 9)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def spy_on_decoding(monkeypatch, limit: int) -> list[tuple[int, int]]:
    """Record the size of every image PIL decodes from now on (the server runs in this process, in threads).

    An image over ``limit`` is refused instead of decoded: a regression then fails the test rather than
    allocating gigabytes on a shared machine.
    """
    from PIL import ImageFile

    decoded, load = [], ImageFile.ImageFile.load

    def spy(im):
        decoded.append(im.size)
        if im.size[0] * im.size[1] > limit:
            raise MemoryError(f"test: decoding {im.size} refused")
        return load(im)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return decoded


@dataclass
class Session:
    """One browser session's run as the server answered it."""

    files: dict[str, dict] = field(default_factory=dict)  # orig_name -> Gradio FileData (path, url)
    received: bytes = b""  # every byte the server sent this session (event stream, its downloads)
    trace: dict = field(default_factory=dict)


@dataclass
class Server:
    port: int
    work: Path
    victim: Session
    attacker: Session
    victim_thread: str  # the victim's thread id (the attacker is granted even this)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def fetch(port: int, target: str, method: str = "GET", headers: dict | None = None) -> tuple[int, bytes, dict]:
    """``method target`` sent as written; returns status, body and headers (names lower-case)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Host": f"127.0.0.1:{port}", **(headers or {})}
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def file_data(path: str, name: str) -> dict:
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def upload(client, image: Path, **headers) -> httpx.Response:
    return client.post("/gradio_api/upload", files={"files": (image.name, image.read_bytes(), "image/png")},
                       headers=headers)  # fmt: skip


def fn_index(client, api_name: str) -> int:
    deps = client.get("/config").json()["dependencies"]
    return next(i for i, d in enumerate(deps) if d.get("api_name") == api_name)


def call(client, api_name: str, data: list) -> tuple[list, bytes]:
    """Queue one event as the page does (join, then read the session's event stream); returns outputs and bytes."""
    session_hash = secrets.token_hex(8)
    join = client.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index(client, api_name),
                                                       "session_hash": session_hash})  # fmt: skip
    assert join.status_code == 200, join.text
    event, raw = join.json()["event_id"], b""
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash}) as s:
        for line in s.iter_lines():
            raw += line.encode() + b"\n"
            if not line.startswith("data:"):
                continue
            msg = json.loads(line[5:])
            if msg.get("msg") == "process_completed" and msg.get("event_id") == event:
                assert msg.get("success"), msg
                return msg["output"]["data"], raw
    raise AssertionError(f"{api_name}: the event stream ended without a result")


def file_objects(value) -> list[dict]:
    if isinstance(value, dict):
        if value.get("meta", {}).get("_type") == "gradio.FileData":
            return [value]
        return [f for v in value.values() for f in file_objects(v)]
    if isinstance(value, list):
        return [f for v in value for f in file_objects(v)]
    return []


def run_session(base: str, image: Path) -> Session:
    """Upload ``image``, diagnose and restore it without review, and download the trace, as a page would."""
    with httpx.Client(base_url=base, timeout=120) as c:
        up = upload(c, image)
        assert up.status_code == 200, up.text
        outputs, raw = call(c, "on_restore", [file_data(up.json()[0], image.name), *RUN_ARGS])
        sess = Session(files={f["orig_name"]: f for f in file_objects(outputs)}, received=raw)
        trace = next(f for name, f in sess.files.items() if name.endswith(".trace.json"))
        body = c.get(trace["url"]).content
        sess.received += body
        sess.trace = json.loads(body)
        return sess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import socket

    from agent.ui.page import launch
    from reasoner.imageio import save_image
    from rl import degradations as D
    from rl.photos import load_photo

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work, pics = tmp_path_factory.mktemp("ui"), tmp_path_factory.mktemp("pics")
    app = launch(port=port, block=False, work_dir=work, max_pixels=LIMIT)
    base = f"http://127.0.0.1:{port}"
    try:
        victim_png = save_image(pics / "victim.png", D.apply(load_photo("astronaut")[:96, :96],
                                                             [D.NoiseParams(sigma=25, seed=1)]))  # fmt: skip
        victim = run_session(base, victim_png)
        (npy,) = work.rglob("input.npy")  # the victim's work array, wherever the layout puts it
        attacker = run_session(base, save_image(pics / "mine.png", load_photo("camera")[:64, :64]))
        yield Server(port, work, victim, attacker, npy.parent.name)
    finally:
        app.close()


def victim_outputs(srv: Server) -> dict[str, Path]:
    """The victim's outputs on disk (where the server wrote them), by file name."""
    restored = Path(srv.victim.trace["output_path"])
    return {p.name: p for p in restored.parent.iterdir() if not p.name.startswith(".")}


def private_files(srv: Server) -> list[Path]:
    return sorted(p for p in srv.work.rglob("*") if p.is_file() and (".sqlite" in p.name or p.suffix == ".npy"))


def assert_refused(status: int, body: bytes, secret: bytes = b"") -> None:
    assert status in (403, 404, 405), (status, body[:200])  # 405: a route that only answers GET
    assert len(body) < 2000 and not any(m in body for m in MAGIC), body[:200]
    assert not secret or secret not in body


def test_each_session_gets_its_own_files(server):
    # Positive control: the links the page was given work, and what they serve is what the run wrote.
    for sess in (server.victim, server.attacker):
        names = set(sess.files)
        assert {n for n in names if n.endswith("_restored.png")} and "input_preview.png" in names
        for f in sess.files.values():
            status, body, _ = fetch(server.port, f["url"].split(str(server.port), 1)[1])
            assert status == 200 and body == Path(f["path"]).read_bytes()


def test_private_layout_and_unguessable_served_folders(server):
    private = private_files(server)
    assert any(p.name == "checkpoints.sqlite" for p in private) and any(p.name == "input.npy" for p in private)
    outs = victim_outputs(server)
    served_dir = next(iter(outs.values())).parent
    # Private files and served outputs never share a folder tree: nothing served sits above the database.
    assert all(served_dir not in p.parents and p.parent != served_dir for p in private)
    assert not any(server.work / "served" in p.parents for p in private)
    # The served folder's name is a 128-bit random token, not the thread id, and the attacker never saw it.
    token = served_dir.name
    assert re.fullmatch(r"[0-9a-f]{32}", token) and token != server.victim_thread
    with httpx.Client(base_url=server.base) as c:
        public = c.get("/config").content + c.get("/gradio_api/info").content
    assert token.encode() not in server.attacker.received + public
    assert server.victim_thread.encode() not in server.attacker.received + public


#: How a path is written into a request for Gradio's file route; ``p`` is the target, ``mine`` the attacker's
#: own served folder (known from its trace), ``port`` unused except where noted.
PATH_FORMS = [
    # The form Gradio's own links use.
    ("plain", lambda p, mine: f"/gradio_api/file={p}"),
    # The older route, still answered.
    ("deprecated route", lambda p, mine: f"/gradio_api/file/{p}"),
    # Climbing out of a folder the server does serve.
    ("dot-dot from my folder", lambda p, mine: f"/gradio_api/file={mine}/{os.path.relpath(p, mine)}"),
    # The same climb with the dots and slashes percent-encoded (decoded once by the server).
    ("encoded dot-dot", lambda p, mine: f"/gradio_api/file={mine}/" + quote(os.path.relpath(p, mine), safe="")),
    # The whole path percent-encoded.
    ("encoded absolute", lambda p, mine: "/gradio_api/file=" + quote(str(p), safe="")),
    # Encoded twice: must not be decoded into a path twice.
    ("double-encoded dot-dot",
     lambda p, mine: f"/gradio_api/file={mine}/" + quote(quote(os.path.relpath(p, mine), safe=""), safe="")),
    # Redundant separators and dot segments.
    ("dot segments", lambda p, mine: f"/gradio_api/file=/.{p.parent}//./{p.name}"),
]  # fmt: skip


@pytest.mark.parametrize("form", [f[1] for f in PATH_FORMS], ids=[f[0] for f in PATH_FORMS])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_private_files_are_never_served(server, form, method):
    mine = Path(server.attacker.trace["output_path"]).parent
    for p in private_files(server):
        head = p.read_bytes()[:64]
        for headers in ({}, {"Range": "bytes=0-15"}):  # a ranged read goes through the same check
            status, body, _ = fetch(server.port, form(p, mine), method, headers)
            assert_refused(status, body, head)


def test_a_symlink_next_to_my_outputs_does_not_reach_private_files(server):
    # Someone with a shell plants links in a served folder; the file route resolves them before deciding.
    mine = Path(server.attacker.trace["output_path"]).parent
    for i, p in enumerate([*private_files(server), Path("/etc/passwd")]):
        link = mine / f"link{i}.png"
        link.symlink_to(p)
        try:
            status, body, _ = fetch(server.port, f"/gradio_api/file={link}")
            assert_refused(status, body, p.read_bytes()[:64] if p.exists() else b"")
        finally:
            link.unlink()


def test_another_sessions_outputs_cannot_be_had_by_guessing(server):
    # The attacker knows the layout, the victim's file names and even its thread id; not its served token.
    outs = victim_outputs(server)
    mine = Path(server.attacker.trace["output_path"]).parent
    thread = server.victim_thread
    folders = [server.work / thread, server.work / thread / "out", server.work / "private" / thread,
               server.work / "private" / thread / "out", server.work / "served" / thread, mine]  # fmt: skip
    for folder in folders:
        for name, real in outs.items():
            status, body, _ = fetch(server.port, f"/gradio_api/file={folder / name}")
            if folder == mine and (mine / name).exists():  # a name both runs use: the attacker gets its own file
                assert status == 200 and body == (mine / name).read_bytes() != real.read_bytes()
            else:
                assert_refused(status, body, real.read_bytes()[:64])


@pytest.mark.parametrize(
    "folder",
    [
        lambda srv: srv.work,  # the work folder
        lambda srv: srv.work / "private",  # its private part
        lambda srv: srv.work / "served",  # the folder holding every run's served folder
        lambda srv: Path(srv.attacker.trace["output_path"]).parent,  # my own served folder
        lambda srv: Path(srv.attacker.files["input_preview.png"]["path"]).parent.parent,  # Gradio's upload cache
        lambda srv: Path("/"),  # the file system root
    ],
    ids=["work", "private", "served", "mine", "gradio-cache", "root"],
)
def test_no_folder_is_listed(server, folder):
    status, body, _ = fetch(server.port, f"/gradio_api/file={folder(server)}")
    assert_refused(status, body)
    assert not any(name.encode() in body for name in victim_outputs(server))


#: Request headers a browser would send for a page on ``{port}``'s own site or another one, and whether the
#: server must act on the request. ``{port}`` is the server's port.
ORIGINS = [
    # No Origin and no Referer: curl, scripts, and the page's own same-origin GETs.
    ({}, True),
    # The page itself.
    ({"Origin": "http://127.0.0.1:{port}"}, True),
    # The same loopback server under its other names.
    ({"Origin": "http://localhost:{port}"}, True),
    ({"Origin": "http://[::1]:{port}"}, True),
    # A same-origin Referer without Origin.
    ({"Referer": "http://127.0.0.1:{port}/"}, True),
    # Another site.
    ({"Origin": "http://evil.example"}, False),
    # Another site that happens to use the same port number.
    ({"Origin": "http://evil.example:{port}"}, False),
    # Another web app on this machine (another port).
    ({"Origin": "http://127.0.0.1:1"}, False),
    # A look-alike host name.
    ({"Origin": "http://127.0.0.1.evil.example:{port}"}, False),
    # An opaque origin (sandboxed frame, file: page).
    ({"Origin": "null"}, False),
    # Another site, named only by Referer (an <img> or <a download> on its page).
    ({"Referer": "https://evil.example/page.html"}, False),
    # A Referer whose user-info looks like this server.
    ({"Referer": "http://127.0.0.1:{port}@evil.example/"}, False),
    # DNS rebinding: evil.example now resolves to 127.0.0.1, so Host names it; same-origin GETs carry no Origin.
    ({"Host": "evil.example:{port}"}, False),
    # DNS rebinding, a POST from that page: Origin and Host agree, but neither is a loopback name.
    ({"Host": "evil.example:{port}", "Origin": "http://evil.example:{port}"}, False),
]


def _endpoint(srv: Server, kind: str, headers: dict, tmp: Path) -> int:
    """Send one request of ``kind`` with ``headers``; returns the status."""
    from reasoner.imageio import save_image
    from rl.photos import load_photo

    own = srv.attacker.files["input_preview.png"]
    with httpx.Client(base_url=srv.base, timeout=30) as c:
        if kind == "upload":
            return upload(c, save_image(tmp / "small.png", load_photo("camera")[:16, :16]), **headers).status_code
        if kind == "queue/join":
            body = {"data": [file_data(own["path"], "x.png")], "fn_index": fn_index(c, "on_upload"),
                    "session_hash": secrets.token_hex(8)}  # fmt: skip
            return c.post("/gradio_api/queue/join", json=body, headers=headers).status_code
        if kind == "api call":
            return c.post("/gradio_api/call/on_upload", json={"data": [file_data(own["path"], "x.png")]},
                          headers=headers).status_code  # fmt: skip
        if kind == "file download":
            return c.get(f"/gradio_api/file={own['path']}", headers=headers).status_code
        if kind == "config":
            return c.get("/config", headers=headers).status_code
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["upload", "queue/join", "api call", "file download", "config"])
@pytest.mark.parametrize("headers, allowed", ORIGINS, ids=[json.dumps(h) for h, _ in ORIGINS])
def test_requests_from_other_sites_get_403(server, tmp_path, kind, headers, allowed):
    headers = {k: v.format(port=server.port) for k, v in headers.items()}
    status = _endpoint(server, kind, headers, tmp_path)
    assert (status == 200) if allowed else (status == 403), status


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"Referer": "https://docs.example/how-to"}, 200),  # opening the page from a link elsewhere is fine
        ({"Host": "evil.example:{port}"}, 403),  # but not under a rebound DNS name
    ],
)
def test_the_page_itself_opens_from_links_but_not_in_other_sites_frames(server, headers, status):
    got, body, resp_headers = fetch(server.port, "/", headers={k: v.format(port=server.port) for k, v in
                                                              headers.items()})  # fmt: skip
    assert got == status
    if status == 200:
        assert resp_headers["x-frame-options"] == "SAMEORIGIN"
        assert "frame-ancestors 'self'" in resp_headers["content-security-policy"]
    else:
        assert b"<html" not in body.lower() and b"\n" == body[-1:] and body.count(b"\n") == 1  # one plain line


def test_an_upload_over_the_pixel_limit_is_refused_on_its_header(server, tmp_path, monkeypatch):
    huge = bomb_png(tmp_path / "huge.png")
    assert huge.stat().st_size < 400_000  # small on disk, 132 megapixels declared
    decoded = spy_on_decoding(monkeypatch, LIMIT)
    threads_before = {p.parent for p in server.work.rglob("input.npy")}
    with httpx.Client(base_url=server.base, timeout=60) as c:
        up = upload(c, huge)
        assert up.status_code == 200
        fd = file_data(up.json()[0], "huge.png")
        (preview, status), _ = call(c, "on_upload", [fd])
        run, _ = call(c, "on_restore", [fd, *RUN_ARGS])
    assert preview is None
    expected = (f"\u26a0 huge.png cannot be used: image is 11500x11500 = 132,250,000 pixels, over the {LIMIT:,}-pixel "
                "limit (--max-pixels); if the file is trusted and memory allows, raise it with --max-pixels or "
                "RNR_MAX_PIXELS")  # fmt: skip
    for html in (status, run[1]):  # on upload, and again when Restore is pressed anyway
        assert html.count("<p") == 1 and "\n" not in html and "rnr-error" in html
        assert re.sub(r"<[^>]+>", "", html).replace("&#9888;", "\u26a0") == expected
    assert decoded == []  # the header was read; not one pixel decoded
    assert {p.parent for p in server.work.rglob("input.npy")} == threads_before  # and nothing ran


@pytest.mark.parametrize(
    "host, origin, scheme, refused",
    [
        ("192.168.1.5:7860", "http://192.168.1.5:7860", "http", False),  # the page, reached over the LAN
        ("myhost:7860", "http://myhost:7860", "http", False),  # ... or by the machine's name
        ("myhost", "https://myhost", "https", False),  # default ports on both sides (TLS)
        ("myhost:7860", "http://localhost:7860", "http", True),  # loopback names are not aliases off loopback
        ("192.168.1.5:7860", "http://evil.example", "http", True),  # another site
        ("192.168.1.5:7860", "http://192.168.1.5:8000", "http", True),  # another port on the same machine
        ("myhost:7860", None, "http", False),  # no Origin: a client of the port; the Host cannot be checked here
    ],
)
def test_bound_to_all_interfaces_origin_must_match_the_host(host, origin, scheme, refused):
    # Off loopback the server's own names cannot be listed, so the rule is Origin == Host (Django's CSRF rule).
    from agent.ui.security import cross_origin_reason

    headers = {"host": host} | ({"origin": origin} if origin else {})
    why = cross_origin_reason("POST", "/gradio_api/upload", headers, scheme, loopback=False)
    assert (why is not None) == refused and (why is None or "\n" not in why)


@pytest.mark.parametrize(
    "host, loopback",
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True), ("127.0.0.2", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("myhost", False)],
)  # fmt: skip
def test_which_binds_are_loopback(host, loopback):
    # Loopback binds also get the Host check against DNS rebinding; every other bind relies on Origin == Host.
    from agent.ui.security import is_loopback

    assert is_loopback(host) == loopback
