"""Start `posekit serve` in a subprocess on 127.0.0.1 and talk to it with the standard library
(http.client): what the tests and `posekit bench --stage serve` use. No web framework needed."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
            timeout: float = 60.0) -> Reply:
    """One request to 127.0.0.1:`port` on a fresh connection."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def post_image(port: int, data: bytes, content_type: str = "image/jpeg", timeout: float = 60.0) -> Reply:
    """POST one image as the raw body of /v1/poses."""
    return request(port, "POST", "/v1/poses", data, {"Content-Type": content_type}, timeout)


def multipart(files: Sequence[tuple[str, bytes]]) -> tuple[bytes, str]:
    """(body, Content-Type) of a multipart/form-data upload of `files` (name, bytes)."""
    boundary = uuid.uuid4().hex
    parts = []
    for i, (name, data) in enumerate(files):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image{i}"; filename="{name}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_images(port: int, files: Sequence[tuple[str, bytes]], timeout: float = 60.0) -> Reply:
    """POST several images in one multipart request."""
    body, content_type = multipart(files)
    return request(port, "POST", "/v1/poses", body, {"Content-Type": content_type}, timeout)


class ServerProcess:
    """A `posekit serve` subprocess; `stop()` sends SIGTERM and waits for a graceful exit."""

    def __init__(self, proc: subprocess.Popen, port: int, log_path: str) -> None:
        self.proc, self.port, self.log_path = proc, port, log_path

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def rss_mb(self) -> float:
        """The server's resident memory (Linux /proc), MiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for pid {self.proc.pid}")

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"posekit serve (pid {self.proc.pid}) did not exit within {timeout} s of SIGTERM; "
                               f"log:\n{self.log()[-2000:]}") from None


@contextmanager
def running_server(args: Sequence[str] = (), log_path: str | None = None, env: dict[str, str] | None = None,
                   start_timeout: float = 180.0) -> Iterator[ServerProcess]:
    """`python -m posekit serve --port <free> ARGS` on 127.0.0.1, ready (GET /healthz answers) when
    entered, stopped with SIGTERM when left. Its output goes to `log_path` (default: a temp file)."""
    import tempfile

    port = free_port()
    if log_path is None:
        log_path = tempfile.NamedTemporaryFile(prefix="posekit-serve-", suffix=".log", delete=False).name
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "posekit", "serve", "--host", HOST, "--port", str(port), *args],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    server = ServerProcess(proc, port, log_path)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"posekit serve exited with {proc.returncode} before answering; log:\n"
                                   f"{server.log()[-2000:]}")
            try:
                if request(port, "GET", "/healthz", timeout=5).status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"posekit serve did not answer /healthz within {start_timeout} s; log:\n"
                                   f"{server.log()[-2000:]}")
            time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            server.stop()
