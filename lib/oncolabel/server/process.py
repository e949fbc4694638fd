"""Run ``oncolabel serve`` as a child process (demo, tests, benchmarks)."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

from oncolabel.client import OncoLabelClient


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM if the process that started it dies (no orphaned test servers)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A running OncoLabel server; use as a context manager or call :meth:`stop`."""

    def __init__(self, studies: str | Path, *, port: Optional[int] = None, host: str = "127.0.0.1",
                 conf: Optional[Mapping[str, str]] = None, log_path: Optional[str | Path] = None,
                 startup_timeout: float = 180.0, log_level: str = "warning", extra_args: Sequence[str] = ()) -> None:
        self.host, self.port = host, port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        cmd = [sys.executable, "-m", "oncolabel", "serve", "--studies", str(studies), "--host", host,
               "--port", str(self.port), "--log-level", log_level]
        for k, v in (conf or {}).items():
            cmd += ["--conf", k, str(v)]
        cmd += [str(a) for a in extra_args]
        self.log_path = Path(log_path) if log_path else Path(studies) / ".oncolabel" / "server.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=_die_with_parent)
        atexit.register(self.stop)
        self.client = OncoLabelClient(self.url)
        try:
            self.client.wait_until_ready(startup_timeout, process=self.process)
        except Exception:
            self.stop()
            raise

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and any training subprocess it started (its whole process group)."""
        if self._log.closed:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGINT)
                self.process.wait(timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(5)
        self._log.close()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
