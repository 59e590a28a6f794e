"""A real Git smart-HTTP server for tests: `git http-backend` run as CGI behind a small
threaded HTTP server on a loopback port, optionally with HTTP Basic auth."""
from __future__ import annotations

import base64
import os
import subprocess
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from tests.servers import KeepAliveHandler


class GitHttpServer:
    """Serves every repository under `root` at http://127.0.0.1:PORT/<name>."""

    def __init__(self, root: Path, auth: tuple[str, str] | None = None, v2: bool = True):
        self.root, self.auth, self.v2, self.requests = Path(root), auth, v2, 0
        server = self

        class Handler(_CgiBridge):
            bridge = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> GitHttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _CgiBridge(KeepAliveHandler):
    bridge: GitHttpServer

    def do_GET(self) -> None:
        self._run()

    def do_POST(self) -> None:
        self._run()

    def _run(self) -> None:
        self.bridge.requests += 1
        if self.bridge.auth and not self._authorised():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        done = subprocess.run(["git", "http-backend"], input=body, capture_output=True,
                              env=self._cgi_env(len(body)))
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _authorised(self) -> bool:
        expected = "Basic " + base64.b64encode(":".join(self.bridge.auth).encode()).decode()
        return self.headers.get("Authorization") == expected

    def _cgi_env(self, length: int) -> dict:
        url = urlsplit(self.path)
        env = {**os.environ, "GIT_PROJECT_ROOT": str(self.bridge.root), "GIT_HTTP_EXPORT_ALL": "1",
               "REQUEST_METHOD": self.command, "PATH_INFO": url.path, "QUERY_STRING": url.query,
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(length),
               "REMOTE_ADDR": "127.0.0.1", "REMOTE_USER": self.bridge.auth[0] if self.bridge.auth else ""}
        if self.headers.get("Git-Protocol") and self.bridge.v2:
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        return env


if __name__ == "__main__":
    # `python -m tests.servers.git_http ROOT`: print the URL, serve until killed.
    import sys

    with GitHttpServer(Path(sys.argv[1])) as running:
        running.httpd.socket.listen(128)    # socketserver's default backlog of 5 overflows
        print(running.url, flush=True)
        running.thread.join()
