"""An hg extension for the tests' `hg serve`: TCP_NODELAY on its connections, as the tests'
other servers (tests/servers/__init__.py) and production web servers set it. Without it,
on a keep-alive connection every answer after the first waits about 40 ms for the client's
delayed ACK (headers and body go out in two writes): 2 of a pull's 3 requests, ~90 ms."""
from mercurial.hgweb import server


def uisetup(ui):
    server._httprequesthandler.disable_nagle_algorithm = True
