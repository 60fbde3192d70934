"""Where the server listens and how it is reached: the address, the token, the socket, the QR code."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import re
import secrets
import socket
from pathlib import Path

from voiceflex import files
from voiceflex.errors import ServeError, UsageError

DEFAULT_PORT = 8765
TOKEN_FILE = "serve-token"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22,128}$")
# A documentation address (RFC 5737): asking the system for the route to it
# names the interface a LAN peer would reach; connecting a UDP socket sends nothing.
_PROBE = ("192.0.2.1", 9)


def lan_address(probe: tuple[str, int] = _PROBE) -> str | None:
    """This machine's address on its local network (a private address), or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(probe)
            address = s.getsockname()[0]
    except OSError:
        return None
    return address if is_lan(address) else None


def is_lan(address: str) -> bool:
    """A private, non-loopback address: reachable on a home network, not from the internet."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_private and not ip.is_loopback and not ip.is_unspecified


def default_host() -> str:
    return lan_address() or "127.0.0.1"


def token(keep: bool, data_dir: Path | None = None) -> str:
    """A fresh secret for the URL; with `keep`, the one kept in the user data folder (made once)."""
    if not keep:
        return secrets.token_urlsafe(24)
    path = (data_dir or files.data_dir()) / TOKEN_FILE
    with contextlib.suppress(FileNotFoundError, UnicodeDecodeError):
        kept = path.read_text(encoding="ascii").strip()
        if _TOKEN.match(kept):
            return kept
    fresh = secrets.token_urlsafe(24)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
        # Readable by its owner only: whoever has it can reach every routine served.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(fresh + "\n")
        os.replace(temp, path)
    except OSError as e:
        raise ServeError(f"cannot keep the token in {path}: {e.strerror or e}",
                         hint="run without --keep-token, or make that folder writable") from None
    return fresh


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: a free one) and listening."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: a port is a number from 1 to 65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise UsageError(f"--host {host}: not an address of this machine ({e})",
                         hint="give an IP address, e.g. --host 127.0.0.1") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} on {host} is in use",
                             hint=f"choose another with --port, e.g. --port {port + 1}") from None
        kind = UsageError if e.errno == errno.EADDRNOTAVAIL else ServeError
        raise kind(f"cannot listen on {host}:{port}: {e.strerror or e}",
                         hint="give an address of this machine with --host, e.g. --host 127.0.0.1") from None
    sock.set_inheritable(True)
    return sock


def url_host(sock: socket.socket, host: str) -> str:
    """The host part of the printed URL: the bound address, or the LAN address for a wildcard."""
    bound = sock.getsockname()[0]
    if ipaddress.ip_address(bound).is_unspecified:
        bound = lan_address() or "127.0.0.1"
    return f"[{bound}]" if ":" in bound else bound


def qr_lines(text: str, *, color: bool = False) -> list[str]:
    """`text` as a QR code in half-block characters, two modules a character, light modules drawn.

    Drawn as light on dark, which is right on a dark terminal; with `color`,
    white on black is asked for explicitly, so a light terminal shows it right too.
    """
    import qrcode

    qr = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_L)
    qr.add_data(text)
    qr.make(fit=True)
    dark = qr.get_matrix()
    if len(dark) % 2:
        dark.append([False] * len(dark[0]))
    glyphs = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}
    lines = ["".join(glyphs[(not top, not bottom)] for top, bottom in zip(dark[r], dark[r + 1], strict=True))
             for r in range(0, len(dark), 2)]
    if color:
        lines = [f"\x1b[97;40m{line}\x1b[0m" for line in lines]
    return lines
