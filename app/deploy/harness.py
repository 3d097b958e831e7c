"""Start `ocupredict serve-nginx` (the real command) on free loopback ports and stop it
cleanly: shared by the tests, e2e/run.py and bench/soak.py.

    with NginxStack(env, processes=2) as stack:
        stack.wait_ready()
        httpx.get(stack.url("/api/v1/health/ready"))
        stack.pids()        # {index: pid} of the uvicorn processes now
    # here nothing of it runs any more (stop() raises if something did not stop)

`ServeProcess` does the same for `ocupredict serve` (uvicorn alone, one or N workers).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from app.deploy.nginx import socket_path

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def unix_get(path: Path, target: str, timeout: float = 5) -> tuple[int, bytes]:
    """GET over a Unix socket, straight to one uvicorn process (no nginx)."""
    conn = _UnixConnection(path, timeout)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


class NginxStack:
    def __init__(
        self,
        env: dict[str, str],
        *,
        processes: int = 2,
        socket_dir: Path | None = None,
        cwd: Path | None = None,
        log_path: Path | None = None,
        api_prefix: str = "/api/v1",
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """`tls`: (certificate, key) for serve-nginx --tls-cert/--tls-key (https URLs)."""
        self.env = env
        self.processes = processes
        self.socket_dir = socket_dir or Path(tempfile.mkdtemp(prefix="ocupredict-stack-"))
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.cwd = cwd or self.socket_dir
        self.log_path = log_path or self.socket_dir / "serve-nginx.log"
        self.api_prefix = api_prefix
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._started_pids: set[int] = set()
        self.tls = tls

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def socket(self, index: int) -> Path:
        return socket_path(self.socket_dir, index)

    def start(self) -> NginxStack:
        # The processes import this very `app` package, wherever the caller found it.
        env = dict(self.env)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        args = [sys.executable, "-m", "app.cli", "serve-nginx", "--processes"]
        args += [str(self.processes), "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--socket-dir", str(self.socket_dir)]
        if self.tls:
            args += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args, env=env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def pids(self) -> dict[int, int]:
        try:
            data = json.loads((self.socket_dir / "processes.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        pids = {int(k): int(v) for k, v in data.items()}
        self._started_pids.update(pids.values())
        return pids

    def nginx_pid(self) -> int | None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int((self.socket_dir / "nginx.pid").read_text().strip())
        return None

    def ready(self, index: int) -> bool:
        try:
            status, _ = unix_get(self.socket(index), f"{self.api_prefix}/health/ready", 5)
        except OSError:
            return False
        return status == 200

    def wait_ready(self, timeout: float = 300) -> None:
        """Every process ready on its socket, and nginx answering in front of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_running()
            if all(self.ready(i) for i in range(self.processes)) and self._nginx_answers():
                self.pids()
                return
            time.sleep(0.2)
        raise RuntimeError(f"serve-nginx not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def wait_process_ready(self, index: int, timeout: float = 120) -> float:
        """Seconds until process `index` answers ready again (after a kill)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            self._check_running()
            if self.ready(index):
                self.pids()
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"process {index} not ready after {timeout:.0f} s")

    def _nginx_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5):
                return True
        except OSError:
            return False

    def _check_running(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise RuntimeError(f"serve-nginx exited ({code}):\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 120) -> int:
        """SIGTERM serve-nginx; wait; raise if it or any process it started still runs."""
        if self.proc is None:
            return 0
        self.pids()
        nginx = self.nginx_pid()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(f"serve-nginx did not stop:\n{self.log_tail()}") from None
        left = [pid for pid in self._started_pids | {nginx or 0} if pid and pid_alive(pid)]
        if left:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise RuntimeError(f"processes left running after serve-nginx stopped: {left}")
        return self.proc.returncode

    def __enter__(self) -> NginxStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ServeProcess:
    """`ocupredict serve --workers N` on a free loopback port, its stdout and stderr in
    `log_path`; stop() sends SIGTERM (uvicorn stops its workers) and waits."""

    def __init__(
        self, env: dict[str, str], *, workers: int = 1, cwd: Path, log_path: Path | None = None
    ) -> None:
        self.env = env
        self.workers = workers
        self.cwd = cwd
        self.log_path = log_path or cwd / "serve.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServeProcess:
        env = dict(self.env)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        args = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1"]
        args += ["--port", str(self.port), "--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args,
                env=env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, path: str = "/api/v1/health/ready", timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"serve exited:\n{self.log_text()[-4000:]}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", path)
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.2)
        raise RuntimeError(f"serve not ready after {timeout:.0f} s:\n{self.log_text()[-4000:]}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 120) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise RuntimeError(f"serve did not stop:\n{self.log_text()[-4000:]}") from None
        return self.proc.returncode

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
