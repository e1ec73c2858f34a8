"""HTTP at the socket: a request body sent chunk by chunk while watching for the server's answer, so a test sees
how much of a body the server took before it answered (httpx writes the whole body before it reads)."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterable, Iterator


def _complete(head: bytes, rest: bytes) -> bool:
    """Whether `rest` holds the whole body the headers announce (Content-Length, or chunked to its last chunk)."""
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])}
    if b"content-length" in fields:
        return len(rest) >= int(fields[b"content-length"])
    return fields.get(b"transfer-encoding", b"").lower() == b"chunked" and rest.endswith(b"0\r\n\r\n")


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2 :]
    return out


def read_response(sock: socket.socket) -> tuple[int | None, dict[str, str], bytes]:
    """Status, headers (lower-case) and body of the answer, read until it is complete or the server closes."""
    sock.setblocking(True)
    sock.settimeout(60)
    data = b""
    try:
        while True:
            part = sock.recv(65536)
            if not part:
                break
            data += part
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep and _complete(head, rest):
                break
    except ConnectionResetError:
        pass
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0] else None
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return status, headers, body


def post_raw(
    port: int, path: str, headers: dict[str, str], chunks: Iterable[bytes]
) -> tuple[int | None, dict[str, str], bytes, int]:
    """(status, headers, body, body bytes the server took before it answered)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = f"POST {path} HTTP/1.1\r\nHost: leanserve\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock.sendall(head.encode())
    sock.setblocking(False)
    sent = 0
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                readable, writable, _ = select.select([sock], [sock], [], 60)
                if readable:
                    return (*read_response(sock), sent)
                if not writable:
                    raise TimeoutError("the server neither read nor answered for 60 s")
                try:
                    n = sock.send(view)
                except (BrokenPipeError, ConnectionResetError):
                    return (*read_response(sock), sent)
                sent += n
                view = view[n:]
        return (*read_response(sock), sent)
    finally:
        sock.close()


def chunked(total: int, size: int = 1 << 16) -> Iterator[bytes]:
    """`total` bytes in HTTP/1.1 chunked framing: a body without Content-Length."""
    for _ in range(0, total, size):
        yield f"{size:x}\r\n".encode() + b"x" * size + b"\r\n"
    yield b"0\r\n\r\n"
