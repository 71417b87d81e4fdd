"""Where a bsopt server listens: ports, loopback addresses, and the warning beyond them.

``bsopt dashboard`` and ``bsopt storage-proxy`` both serve without authentication, so both
bind 127.0.0.1 by default and say so when asked to listen anywhere else.
"""

from __future__ import annotations

import ipaddress
import socket
import sys

from bsopt.errors import UsageError

MIN_PORT, MAX_PORT = 1, 65535


def check_port(port: int) -> int:
    """Return ``port`` if it is a TCP port number.

    Raises:
        UsageError: not between 1 and 65535 (the OS would take it modulo 65536).
    """
    if not MIN_PORT <= port <= MAX_PORT:
        raise UsageError(f"--port must be between {MIN_PORT} and {MAX_PORT}, got {port}")
    return port


def is_loopback(host: str) -> bool:
    """True if ``host`` is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost: assume it is reachable
        return False


def warn_if_exposed(host: str, what: str) -> None:
    """Print one warning line on stderr if ``host`` is reachable from other machines."""
    if not is_loopback(host):
        print(f"warning: serving on {host} exposes {what} to the network", file=sys.stderr,
              flush=True)


def check_address(host: str, port: int) -> None:
    """Refuse an address this process cannot listen on now (bad port, in use, unknown host).

    Raises:
        UsageError: with what to change.
    """
    check_port(port)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind(address)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host} port {port} ({exc.strerror or exc}): "
            "pick another --port or --host"
        ) from None
