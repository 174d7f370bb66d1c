"""The studio's HTTP server: static page, token check, JSON errors, TLS like gRPC.

The standard library's threading HTTP server is enough for one analyst's page
on loopback (or a few over TLS); the number of requests handled at once is
bounded so a page in a loop cannot take the daemon's memory.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from sipd.access import required_scope
from sipd.errors import Code, InvalidArgument, SipError, bounded, disk_full
from sipd.studio.api import MethodNotAllowed, Request, Response, StudioApi, match

if TYPE_CHECKING:
    from sipd.server import Daemon

log = logging.getLogger("sipd.studio")

STATIC = Path(__file__).parent / "static"
COOKIE = "sipd_studio"
# Requests in progress at once; beyond it, 503 (a live update holds one for seconds).
MAX_ACTIVE = 16
# Open connections (each a thread); beyond it a new one is closed at once.
MAX_CONNECTIONS = 64
# Seconds a connection may stay silent (TLS handshake, headers, body, keep-alive).
IDLE_SECONDS = 30.0
MAX_BODY = 1024 * 1024
# The gRPC method whose scope the page and its files need: reading a project.
PAGE_RPC = "/sip.v1.ProjectService/ListProjects"
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
HTTP_STATUS = {
    Code.INVALID_ARGUMENT: 400,
    Code.PERMISSION_DENIED: 403,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.FAILED_PRECONDITION: 409,
    Code.ABORTED: 409,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.CANCELLED: 409,
    Code.UNAVAILABLE: 503,
}
# Pages are never framed or fed scripts from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_PHRASES = {s.value: s.phrase for s in HTTPStatus}
REFUSED_PAGE = """<!doctype html><meta charset="utf-8"><title>sipd studio: not signed in</title>
<body style="font-family:sans-serif;max-width:40em;margin:4em auto">
<h1>Not signed in</h1><p>{message}</p>
<p>Open the address that <code>sipctl studio</code> prints: it carries your token.</p></body>
"""


class _HttpServer(ThreadingHTTPServer):
    """One thread per connection, at most MAX_CONNECTIONS; TLS handshakes in that thread.

    Wrapping the listening socket would run each handshake inside accept(), on
    the one thread that accepts: a client that connects and says nothing would
    stop the studio for everyone.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, tls: ssl.SSLContext | None):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.tls = tls
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(IDLE_SECONDS)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("studio: TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()


class StudioServer:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.api = StudioApi(daemon, threads=daemon.config.jobs.threads)
        self.tls = bool(daemon.config.tls.cert)
        self._slots = threading.BoundedSemaphore(MAX_ACTIVE)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.cookie = COOKIE

    def serve(self, listen: str) -> str:
        """Start listening on HOST:PORT (port 0: a free one); returns the address."""
        host, _, port = listen.rpartition(":")
        handler = type("Handler", (_Handler,), {"studio": self})
        context = _tls_context(self.daemon.config) if self.tls else None
        try:
            httpd = _HttpServer((host.strip("[]"), int(port)), handler, context)
        except OSError as exc:
            raise SipError(
                f"cannot listen on {listen} for the studio: {exc.strerror}; pick another "
                "studio_listen (--studio-listen) or '' to turn the studio off",
                Code.FAILED_PRECONDITION,
            ) from None
        # Cookies are shared by every port of a host: one name per studio, so that two
        # daemons on one machine do not sign each other out.
        self.cookie = f"{COOKIE}_{httpd.server_address[1]}"
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="studio", daemon=True)
        self._thread.start()
        # torch and scikit-learn take seconds to import: not on the first live update.
        threading.Thread(target=_import_live_model, name="studio-warm", daemon=True).start()
        return f"{host}:{httpd.server_address[1]}"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


def _import_live_model() -> None:
    try:
        import sklearn.ensemble  # noqa: F401
        import torch  # noqa: F401

        import sipd.nets.filter_bank  # noqa: F401
    except Exception:  # the first live update reports it
        log.exception("studio: the live model's packages do not import")


def _tls_context(config: Any) -> ssl.SSLContext:
    tls = config.tls
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key)
    if tls.client_ca:
        context.load_verify_locations(tls.client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class _Handler(BaseHTTPRequestHandler):
    studio: StudioServer
    server_version = "sipd-studio"
    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        # The path only: a sign-in's query carries the token.
        log.debug("%s %s %s %s", self.address_string(), self.command,
                  urlsplit(self.path).path, code)  # fmt: skip

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        log.debug("studio: %s", format % args)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("GET")  # _send leaves the body out

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_OPTIONS(self) -> None:
        # No CORS preflight is ever granted: the page is served from this origin.
        self._refuse_method()

    def do_PUT(self) -> None:
        self._refuse_method()

    def do_PATCH(self) -> None:
        self._refuse_method()

    def _refuse_method(self) -> None:
        self.close_connection = True  # its body, if any, is not read
        message = f"{self.command} is not accepted; GET, HEAD, POST and DELETE are"
        self._json(405, {"error": message, "code": "INVALID_ARGUMENT"},
                   {"Allow": "GET, HEAD, POST, DELETE"})  # fmt: skip

    def _serve(self, method: str) -> None:
        try:
            # Read before anything can refuse: an unread body would be parsed as the next
            # request. The read is bounded by MAX_BODY and the idle timeout.
            raw = self._raw_body()
        except Exception as exc:
            self._failure(exc)
            return
        if not self.studio._slots.acquire(blocking=False):
            self._json(503, {"error": f"the studio is handling {MAX_ACTIVE} requests; retry",
                             "code": "UNAVAILABLE"})  # fmt: skip
            return
        try:
            self._dispatch(method, raw)
        except Exception as exc:  # every failure answers; the daemon stays up
            self._failure(exc)
        finally:
            self.studio._slots.release()

    def _dispatch(self, method: str, raw: bytes) -> None:
        url = urlsplit(self.path)
        path = url.path
        query = dict(parse_qsl(url.query))
        if method == "GET" and path == "/" and "token" in query:
            self._sign_in(query["token"])
            return
        is_api = path.startswith("/api/")
        route = None
        args: tuple[str, ...] = ()
        if is_api:
            try:
                found = match(method, path)
            except MethodNotAllowed as exc:
                self._json(405, {"error": f"{method} {path} is not accepted; {exc}",
                                 "code": "INVALID_ARGUMENT"},
                           {"Allow": ", ".join(exc.allowed)})  # fmt: skip
                return
            if found is None:
                self._json(404, {"error": f"no such route {path}; see docs/studio.md",
                                 "code": "NOT_FOUND"})  # fmt: skip
                return
            route, args = found
        rpc = route.rpc if route else PAGE_RPC
        decision = self.studio.daemon.access.check(rpc, required_scope(rpc), self._authorization())
        if not decision.allowed:
            status = 401 if decision.code == "UNAUTHENTICATED" else 403
            if is_api:
                self._json(status, {"error": decision.message, "code": decision.code})
            else:
                self._html(status, REFUSED_PAGE.format(message=_escape(decision.message)))
            return
        if method != "GET" and self.headers.get("X-Sipd-Studio") != "1":
            # A page of another site can post a form, not a custom header (CORS preflight).
            self._json(403, {"error": "changes need the header X-Sipd-Studio: 1",
                             "code": "PERMISSION_DENIED"})  # fmt: skip
            return
        if not is_api:
            if method != "GET":
                self._json(405, {"error": f"{method} {path} is not accepted; pages are read "
                                 "with GET", "code": "INVALID_ARGUMENT"}, {"Allow": "GET, HEAD"})
                return
            self._static(path)
            return
        assert route is not None
        request = Request(method, path, query, _json_object(raw), decision.who,
                          _scope_of(self.studio, self._authorization()))  # fmt: skip
        response = self.studio.api.call(route, args, request)
        self._answer(response)

    def _authorization(self) -> str | None:
        header = self.headers.get("Authorization")
        if header:
            return header
        # By hand, not http.cookies: that parser gives up on the first cookie it does
        # not like, and other programs on this host set cookies for 127.0.0.1 too.
        for item in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = item.strip().partition("=")
            if name == self.studio.cookie and value:
                return f"Bearer {value}"
        return None

    def _sign_in(self, token: str) -> None:
        decision = self.studio.daemon.access.check(PAGE_RPC, required_scope(PAGE_RPC),
                                                   f"Bearer {token}")  # fmt: skip
        if not decision.allowed:
            self._html(401, REFUSED_PAGE.format(message=_escape(decision.message)))
            return
        cookie = f"{self.studio.cookie}={token}; Path=/; HttpOnly; SameSite=Strict"
        if self.studio.tls:
            cookie += "; Secure"
        self.send_response(303)
        self.send_header("Location", "/")
        self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", "0")
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()

    def _raw_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise InvalidArgument(
                "chunked request bodies are not accepted; send Content-Length with the body"
            )
        text = self.headers.get("Content-Length") or "0"
        length = int(text) if text.isdigit() else -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True  # the rest of the stream is not a request
            raise InvalidArgument(
                f"Content-Length {text[:20]!r} is not accepted: a body of 0..{MAX_BODY} bytes"
            )
        return self.rfile.read(length) if length else b""

    def _static(self, path: str) -> None:
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
        file = (STATIC / name).resolve()
        if (path != "/" and not path.startswith("/static/")) or STATIC.resolve() not in (
            file.parents
        ) or not file.is_file():
            self._json(404, {"error": f"no such page {path}", "code": "NOT_FOUND"})
            return
        data = file.read_bytes()
        self._send(200, STATIC_TYPES.get(file.suffix, "application/octet-stream"), data)

    def _answer(self, response: Response) -> None:
        if response.png is not None:
            self._send(response.status, "image/png", response.png)
        else:
            self._json(response.status, response.body or {})

    def _failure(self, exc: Exception) -> None:
        if isinstance(exc, SipError):
            status, code, message = HTTP_STATUS.get(exc.code, 500), exc.code.value, str(exc)
        elif (full := disk_full(exc)) is not None:
            status, code, message = 507, "RESOURCE_EXHAUSTED", str(full)
        elif isinstance(exc, RecursionError):
            status, code = 400, "INVALID_ARGUMENT"
            message = "the input is nested too deeply to read; flatten it and try again"
        elif isinstance(exc, BrokenPipeError | ConnectionResetError):
            return  # the page went away; nothing to answer
        else:
            log.exception("studio: %s %s failed", self.command, self.path)
            status, code = 500, "INTERNAL"
            message = (f"internal error: {type(exc).__name__}: {bounded(str(exc))} "
                       "(details in the daemon log)")  # fmt: skip
        try:
            self._json(status, {"error": bounded(message, 1000), "code": code})
        except OSError:
            pass

    def _json(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self._send(status, "application/json", json.dumps(body).encode(), headers)

    def _html(self, status: int, text: str) -> None:
        self._send(status, "text/html; charset=utf-8", text.encode())

    def _send(
        self, status: int, content_type: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status, _PHRASES.get(status, ""))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def _json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"the request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return body


def _scope_of(studio: StudioServer, authorization: str | None) -> str:
    # The highest scope this token passes, for the page to grey out what it cannot do.
    for rpc, name in (("/sip.v1.ProjectService/DeleteProject", "admin"),
                      ("/sip.v1.TrainingService/Train", "label")):  # fmt: skip
        if studio.daemon.access.check(rpc, required_scope(rpc), authorization).allowed:
            return name
    return "read"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
