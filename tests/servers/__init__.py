"""Real servers the tests run locally (no mocks of what a source talks to)."""
from http.server import BaseHTTPRequestHandler


class KeepAliveHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, as the real services speak it; TCP_NODELAY, since headers
    and body go out in two writes (a delayed ACK would hold the body 40 ms); no request log."""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:
        pass
