"""The head checks' HTTP client against scripted loopback servers: framing, keep-alive,
redirects, TLS, the environment's proxy."""
from __future__ import annotations

import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from orchestrator.sources import lean_http
from orchestrator.sources.lean_http import HttpError, Pool
from tests.servers.http_proxy import HttpProxy


class Scripted:
    """Answers each connection's requests with the next raw responses in `script`; a None
    closes the connection instead of answering, an HTTP/1.0 answer closes it after sending."""

    def __init__(self, *script: bytes | None):
        self.script, self.requests, self.connections = list(script), [], 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.script:
            conn, _ = self.listener.accept()
            self.connections += 1
            with conn:
                while self.script:
                    request = self._read_request(conn)
                    if not request:
                        break
                    self.requests.append(request)
                    answer = self.script.pop(0)
                    if answer is None:
                        break
                    conn.sendall(answer)
                    if answer.startswith(b"HTTP/1.0"):
                        break

    @staticmethod
    def _read_request(conn) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            if not (chunk := conn.recv(65536)):
                return b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                while len(body) < int(line.split(b":")[1]):
                    body += conn.recv(65536)
        return head + b"\r\n\r\n" + body


def ok(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + b"".join(h + b"\r\n" for h in extra) \
        + b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_kept_alive_connections_carry_many_requests():
    server = Scripted(ok(b"one"), ok(b"two"), ok(b"three"))
    pool = Pool()
    answers = [pool.request("GET", f"{server.url}/x").body for _ in range(3)]
    assert answers == [b"one", b"two", b"three"] and server.connections == 1


def test_chunked_bodies_and_their_trailers_are_read_whole():
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"4\r\nWiki\r\n6;ext=1\r\npedia \r\n0\r\nX-Trailer: yes\r\n\r\n")
    server = Scripted(chunked, ok(b"after"))
    pool = Pool()
    assert pool.request("GET", server.url).body == b"Wikipedia "
    assert pool.request("GET", server.url).body == b"after" and server.connections == 1


def test_a_body_without_length_is_read_until_the_server_closes_and_the_connection_is_dropped():
    server = Scripted(b"HTTP/1.0 200 OK\r\n\r\nuntil close", ok(b"fresh"))
    pool = Pool()
    assert pool.request("GET", server.url).body == b"until close"
    assert pool.request("GET", server.url).body == b"fresh" and server.connections == 2


def test_an_idle_connection_the_server_closed_is_replaced_once_without_an_error():
    server = Scripted(ok(b"first"), None, ok(b"second"))
    pool = Pool()
    assert pool.request("GET", server.url).body == b"first"
    assert pool.request("GET", server.url).body == b"second" and server.connections == 2


def test_redirects_are_followed_and_a_post_becomes_a_get_on_303():
    server = Scripted(b"HTTP/1.1 303 See Other\r\nLocation: /there\r\nContent-Length: 0\r\n\r\n",
                      ok(b"arrived"))
    answer = Pool().request("POST", f"{server.url}/here", body=b"payload")
    assert answer.body == b"arrived" and answer.headers["content-length"] == "7"
    assert server.requests[1].startswith(b"GET /there HTTP/1.1")


def test_credentials_follow_a_redirect_on_the_same_origin_only():
    elsewhere = Scripted(ok(b"other host"))
    server = Scripted(b"HTTP/1.1 302 Found\r\nLocation: /moved\r\nContent-Length: 0\r\n\r\n",
                      b"HTTP/1.1 307 Temporary Redirect\r\nLocation: " + elsewhere.url.encode()
                      + b"/r.git\r\nContent-Length: 0\r\n\r\n")
    answer = Pool().request("GET", f"{server.url}/r.git", auth=("deploy", "s3cret"),
                            headers={"Authorization": "Basic c3RvbGVu", "Git-Protocol": "version=2"})
    assert answer.body == b"other host"
    assert all(b"Authorization:" in r for r in server.requests)
    assert b"Authorization" not in elsewhere.requests[0] and b"Git-Protocol" in elsewhere.requests[0]


def test_a_redirect_from_https_down_to_http_is_refused(https_server):
    url, trusted = https_server
    plain = Scripted(ok(b"in the clear"))
    down = f"{url}/to/{plain.url.removeprefix('http://')}/r.git"
    with pytest.raises(HttpError, match="refused a redirect from https to http://127.0.0.1"):
        Pool(context=trusted).request("GET", down, auth=("deploy", "s3cret"))
    assert plain.requests == []


def test_where_the_system_has_no_quick_acknowledgement_the_client_works_without_it(monkeypatch):
    monkeypatch.setattr(lean_http, "QUICKACK", None)        # as on macOS or BSD
    server = Scripted(ok(b"first"), ok(b"second"))
    pool = Pool()
    assert [pool.request("GET", server.url).body for _ in range(2)] == [b"first", b"second"]


def test_basic_auth_and_default_headers_are_sent_and_the_callers_headers_win():
    server = Scripted(ok(b""))
    Pool(headers={"Accept": "a/b", "X-Pool": "1"}).request(
        "GET", server.url, auth=("deploy", "s3cret"), headers={"Accept": "c/d"})
    sent = server.requests[0].decode()
    assert "Authorization: Basic ZGVwbG95OnMzY3JldA==" in sent
    assert "Accept: c/d" in sent and "Accept: a/b" not in sent and "X-Pool: 1" in sent


def test_a_refused_connection_is_an_http_error_naming_the_address():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with pytest.raises(HttpError, match=f"127.0.0.1:{port}"):
        Pool(timeout=2).request("GET", f"http://127.0.0.1:{port}/")


def test_a_server_that_never_answers_times_out():
    listener = socket.create_server(("127.0.0.1", 0))
    with pytest.raises(HttpError, match="127.0.0.1"):
        Pool(timeout=0.3).request("GET", f"http://127.0.0.1:{listener.getsockname()[1]}/")
    listener.close()


@pytest.fixture
def https_server():
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path.startswith("/to/"):        # a redirect down to plain http
                self.send_response(301)
                self.send_header("Location", "http://" + self.path.removeprefix("/to/"))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"secure")

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = server_context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    yield f"https://127.0.0.1:{httpd.server_address[1]}", client_context
    httpd.shutdown()
    httpd.server_close()


def test_https_is_verified_against_the_trusted_authorities(https_server):
    url, trusted = https_server
    pool = Pool(context=trusted)
    assert [pool.request("GET", url).body for _ in range(2)] == [b"secure", b"secure"]
    with pytest.raises(HttpError, match="CERTIFICATE_VERIFY_FAILED"):
        Pool(timeout=5).request("GET", url)      # the system store does not know this CA


def test_https_goes_through_the_environments_proxy_in_one_tunnel_with_the_proxys_credentials(
        https_server, proxy_environment):
    url, trusted = https_server
    with HttpProxy(auth=("relay", "pr0xy-pass")) as proxy:
        proxy_environment.setenv("HTTPS_PROXY", proxy.url.replace("://", "://relay:pr0xy-pass@"))
        pool = Pool(context=trusted)
        answers = [pool.request("GET", f"{url}/r.git", auth=("deploy", "s3cret")).body for _ in range(2)]
    assert answers == [b"secure", b"secure"]
    assert proxy.seen == [("CONNECT", url.removeprefix("https://"))]


def test_plain_http_goes_to_the_environments_proxy_by_its_whole_url(proxy_environment):
    server = Scripted(ok(b"relayed"))
    with HttpProxy() as proxy:
        proxy_environment.setenv("http_proxy", proxy.url)
        answer = Pool().request("GET", f"{server.url}/r.git?service=x")
    assert answer.body == b"relayed" and proxy.seen == [("GET", f"{server.url}/r.git?service=x")]
    assert server.requests[0].startswith(b"GET /r.git?service=x HTTP/1.1")


@pytest.mark.parametrize("name", ["no_proxy", "NO_PROXY"])
def test_hosts_no_proxy_names_are_reached_directly(https_server, proxy_environment, name):
    url, trusted = https_server
    plain = Scripted(ok(b"direct"))
    with HttpProxy() as proxy:
        proxy_environment.setenv("https_proxy", proxy.url)
        proxy_environment.setenv("HTTP_PROXY", proxy.url)
        proxy_environment.setenv(name, "localhost,127.0.0.1")
        answers = [Pool(context=trusted).request("GET", url).body, Pool().request("GET", plain.url).body]
    assert answers == [b"secure", b"direct"] and proxy.seen == []


def test_a_proxy_that_refuses_the_tunnel_is_an_error_naming_it_and_the_answer(https_server, proxy_environment):
    url, trusted = https_server
    with HttpProxy(auth=("relay", "pr0xy-pass")) as proxy:
        proxy_environment.setenv("https_proxy", proxy.url)
        with pytest.raises(HttpError, match=f"the proxy {proxy.url} refused a tunnel to "
                                            f"{url.removeprefix('https://')}: HTTP/1.1 407"):
            Pool(context=trusted).request("GET", url)


def test_a_proxy_other_than_http_is_an_error_naming_it(proxy_environment):
    proxy_environment.setenv("all_proxy", "socks5://127.0.0.1:1080")
    with pytest.raises(HttpError, match="socks5://127.0.0.1:1080: head checks speak to http:// proxies only"):
        Pool().request("GET", "http://127.0.0.1:9/")
