"""What keeps other sites out of ``rnr ui``: a same-origin check on every request, before Gradio sees it.

Requests a page on another site sends (an ``Origin`` or ``Referer`` that is not this server, or, on loopback, a
``Host`` that is not a loopback name: DNS rebinding) get 403 from :class:`SameOriginOnly`, which also forbids
framing the page by other sites. Pure functions and an ASGI class: no Gradio import, tested over plain HTTP.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

#: Host names that all mean this machine's loopback interface (compared lower-case, IPv6 without brackets).
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` serves this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _site(url_or_host: str, scheme: str) -> tuple[str, int] | None:
    """(host name, port) of an ``Origin``/``Referer`` URL or a ``Host`` header value; None when it names none."""
    parts = urlsplit(url_or_host if "://" in url_or_host else f"//{url_or_host}")
    try:
        port = parts.port
    except ValueError:  # a port that is not a number
        return None
    if not parts.hostname:  # "null" (sandboxed frames, file: pages) names no site
        return None
    secure = (parts.scheme or scheme) in ("https", "wss")
    return parts.hostname, port or (443 if secure else 80)


def cross_origin_reason(method: str, path: str, headers, scheme: str = "http", loopback: bool = True) -> str | None:
    """Why a request must be refused as coming from another site's page (None to let it through).

    A browser names the page that sent a request in ``Origin`` (always on POST and on cross-site fetches) or else
    in ``Referer``; the request must come from this server's own site, the one in ``Host``. Bound to loopback,
    ``Host`` must itself be a loopback name (a page whose DNS name was re-pointed at 127.0.0.1 is refused), and the
    loopback names are interchangeable at the same port. Port forwarding (``ssh -L 8000:localhost:7860``) keeps
    working: the browser's ``Host`` and ``Origin`` then agree on 8000. A request naming neither header (curl, a
    script, a same-origin GET) goes through, and so does opening the page itself from a link elsewhere.
    """
    host = _site(headers.get("host", ""), scheme)
    if host is None:
        return "request refused: no valid Host header"
    if loopback and host[0] not in LOOPBACK_NAMES:
        return f"request refused: Host {headers.get('host')} is not a loopback name of this server"
    sender, name = headers.get("origin"), "Origin"
    if sender is None:
        sender, name = headers.get("referer"), "Referer"
        if sender is None or (method in ("GET", "HEAD") and path == "/"):
            return None
    site = _site(sender, scheme)
    same = site is not None and site[1] == host[1] and (
        site[0] == host[0] or (loopback and site[0] in LOOPBACK_NAMES))  # fmt: skip
    if same:
        return None
    return f"cross-origin request refused: {name} {sender[:200]} is not this server ({headers.get('host')})"


class SameOriginOnly:
    """ASGI middleware: 403 for requests another site's page sends (:func:`cross_origin_reason`), before Gradio.

    Gradio's own CORS middleware only decides whether a page may *read* a response; the upload, the queued call or
    the file read has happened by then. This one stops the request itself, and forbids framing the page by other
    sites (a frame would let them click for the user).
    """

    def __init__(self, app, loopback: bool = True) -> None:
        self.app = app
        self.loopback = loopback

    async def __call__(self, scope, receive, send) -> None:  # noqa: D102
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import Headers

        why = cross_origin_reason(scope.get("method", "GET"), scope["path"], Headers(scope=scope),
                                  scope.get("scheme", "http"), self.loopback)  # fmt: skip
        if why is not None:
            if scope["type"] == "websocket":  # closing before accepting answers the handshake with 403
                await send({"type": "websocket.close", "code": 1008})
                return
            from starlette.responses import PlainTextResponse

            await PlainTextResponse(why + "\n", status_code=403)(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        async def send_framed(message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-frame-options", b"SAMEORIGIN"),
                                      (b"content-security-policy", b"frame-ancestors 'self'")]  # fmt: skip
            await send(message)

        await self.app(scope, receive, send_framed)
