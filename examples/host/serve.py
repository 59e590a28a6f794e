"""The example app host that `make run` starts beside `sluice up`: it serves the example
function app (examples/hello-functions) from the LIVE release the way the Azure Functions
Python worker does, on http://127.0.0.1:7071 (the Functions host's local port).

- At start it resolves the target symlink and pins that release: the release's
  `.python_packages/lib/site-packages` (where Sluice's build installs requirements.txt) and
  its root go on sys.path, and every function (a folder with a function.json whose trigger is
  `httpTrigger`) is imported.
- GET/POST /api/<route> (the binding's `route`, else the function's name) calls the
  function's entry point (`main`) with an `azure.functions.HttpRequest` under the binding's
  name, and answers with the HttpResponse it returns; a function that raises answers 500.
- GET /health answers 200 once every function imported, 500 naming those that did not, with
  the pinned release's path in a JSON body: a health check whose `body_contains` is
  `{deployment}` proves that the new release is the one serving and that its code loads.
- No release yet: 503. Every answer names the release in X-Release.
- SIGHUP re-executes the host (fresh imports of the release the symlink points at now) in
  the same process, so its pidfile stays true; the listening socket is handed over, so a
  request during the reload waits instead of being refused. SIGTERM stops it.

Stdlib only, plus what the release brings (azure-functions).

    python examples/host/serve.py [--target var/sites/hello] [--port 7071] [--pidfile F]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import sys
import threading
import traceback
import types
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

HERE = Path(__file__).resolve()


@dataclass
class Function:
    name: str
    route: str
    methods: set[str]           # upper case; empty: any
    argument: str               # the trigger binding's name, which the entry point's parameter has
    entry: Any = None
    error: str | None = None    # why it did not import


@dataclass
class App:
    release: Path | None
    functions: dict[str, Function] = field(default_factory=dict)   # by route

    def broken(self) -> dict[str, str]:
        return {f.name: f.error for f in self.functions.values() if f.error}


def pin(target: Path) -> App:
    """The app of the release the target points at now, its functions imported."""
    release = Path(os.path.realpath(target))
    if not release.is_dir():
        return App(None)
    sys.path[:0] = [str(release / ".python_packages" / "lib" / "site-packages"), str(release)]
    package = types.ModuleType("__app__")       # functions are __app__.<name>, as Azure loads them
    package.__path__ = [str(release)]
    sys.modules["__app__"] = package
    app = App(release)
    for spec in sorted(release.glob("*/function.json")):
        function = _load(spec)
        if function:
            app.functions[function.route.lower()] = function
    return app


def _load(spec: Path) -> Function | None:
    name = spec.parent.name
    try:
        config = json.loads(spec.read_text())
        trigger = next((b for b in config.get("bindings", []) if b.get("type") == "httpTrigger"), None)
    except (OSError, ValueError, AttributeError) as exc:
        return Function(name, name, set(), "req", error=f"function.json: {exc}")
    if trigger is None:
        return None             # not an HTTP function: nothing this host serves
    function = Function(name, trigger.get("route") or name, {m.upper() for m in trigger.get("methods") or []},
                        trigger.get("name", "req"))
    try:
        function.entry = getattr(_import(name, spec.parent / config.get("scriptFile", "__init__.py")),
                                 config.get("entryPoint", "main"))
    except Exception as exc:    # the app's own code: whatever it raises makes it unhealthy
        function.error = f"{type(exc).__name__}: {exc}"
    return function


def _import(name: str, script: Path) -> types.ModuleType:
    module_name = f"__app__.{name}"
    package = [str(script.parent)] if script.name == "__init__.py" else None
    spec = importlib.util.spec_from_file_location(module_name, script, submodule_search_locations=package)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


class Handler(BaseHTTPRequestHandler):
    app: App
    server_version = "sluice-example-host"

    def do_GET(self) -> None:       # noqa: N802 (http.server's names)
        self._route()

    def do_POST(self) -> None:      # noqa: N802
        self._route()

    def _route(self) -> None:
        path = urlsplit(self.path).path
        if self.app.release is None:
            return self._answer(503, b"no release is live yet\n")
        if path == "/health":
            return self._health()
        function = self.app.functions.get(path.removeprefix("/api/").lower()) if path.startswith("/api/") else None
        if function is None:
            return self._answer(404, b"not found\n")
        if function.methods and self.command not in function.methods:
            return self._answer(405, b"method not allowed\n")
        self._invoke(function)

    def _health(self) -> None:
        broken = self.app.broken()
        body = {"status": "unhealthy" if broken else "healthy", "release": str(self.app.release),
                "deployment": self.app.release.name if self.app.release else None,
                "functions": {f.name: f.error or "loaded" for f in self.app.functions.values()}}
        self._answer(500 if broken else 200, json.dumps(body).encode() + b"\n", "application/json")

    def _invoke(self, function: Function) -> None:
        if function.error:
            return self._answer(500, f"{function.name} did not load: {function.error}\n".encode())
        try:
            result = function.entry(**{function.argument: self._request()})
        except Exception:
            traceback.print_exc()
            return self._answer(500, b"")       # as the Functions host: the details stay in its log
        if isinstance(result, str | bytes):
            return self._answer(200, result if isinstance(result, bytes) else result.encode())
        headers = dict(result.headers.items())
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = f"{result.mimetype}; charset={result.charset}"
        self._answer(result.status_code, result.get_body(), headers=headers)

    def _request(self) -> Any:
        import azure.functions as func  # from the release's packages, as the worker has it

        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return func.HttpRequest(self.command, f"http://{self.headers.get('Host', 'localhost')}{self.path}",
                                headers=dict(self.headers.items()), params=dict(parse_qsl(url.query)),
                                route_params={}, body=body)

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
                headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {"Content-Type": content_type}).items():
            self.send_header(name, value)
        self.send_header("X-Release", self.app.release.name if self.app.release else "none")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def listen(port: int, inherited: int | None) -> socket.socket:
    if inherited is not None:
        return socket.socket(fileno=inherited)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


def serve(args: argparse.Namespace) -> None:
    wanted: list[str] = []                  # what the signal asked for: "reload" or "stop"
    app = pin(args.target)
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Bound", (Handler,), {"app": app}),
                                 bind_and_activate=False)
    server.daemon_threads = False           # so a reload waits for the answers in progress
    server.socket.close()
    server.socket = listen(args.port, args.listen_fd)

    def on(signum: int, _frame: Any) -> None:
        wanted.append("reload" if signum == signal.SIGHUP else "stop")
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGHUP, on)
    signal.signal(signal.SIGTERM, on)
    signal.signal(signal.SIGINT, on)
    if args.pidfile:
        args.pidfile.write_text(f"{os.getpid()}\n")
    print(f"example host: {app.release or 'no release yet'} on http://127.0.0.1:{server.socket.getsockname()[1]}"
          + "".join(f"\n  {name}: {error}" for name, error in app.broken().items()), file=sys.stderr, flush=True)
    server.serve_forever(poll_interval=0.1)
    if wanted[0] == "reload":
        kept = os.dup(server.socket.fileno())   # the listening socket outlives the old server
        server.server_close()                   # waits for requests in progress
        os.set_inheritable(kept, True)
        os.execv(sys.executable, [sys.executable, str(HERE), *_arguments(args), "--listen-fd", str(kept)])
    server.server_close()
    if args.pidfile and args.pidfile.read_text().strip() == str(os.getpid()):
        args.pidfile.unlink()


def _arguments(args: argparse.Namespace) -> list[str]:
    return ["--target", str(args.target), "--port", str(args.port),
            *(["--pidfile", str(args.pidfile)] if args.pidfile else [])]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=Path, default=Path("var/sites/hello"), help="the live release's symlink")
    parser.add_argument("--port", type=int, default=7071, help="0: any free port (printed)")
    parser.add_argument("--pidfile", type=Path, help="where the host writes its pid, for `activate`'s signal")
    parser.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)    # handed over on reload
    args = parser.parse_args(argv)
    args.target, args.pidfile = args.target.absolute(), args.pidfile and args.pidfile.absolute()
    serve(args)


if __name__ == "__main__":
    main(sys.argv[1:])
