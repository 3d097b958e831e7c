"""`ocupredict serve-nginx`: nginx in front of N single-process uvicorns, in the foreground.

Each process i runs app.deploy.worker on `<socket-dir>/ocupredict-<i>.sock` with
PROCESS_INDEX=i, WEB_WORKERS=N (its share of the cores) and a shared
PROMETHEUS_MULTIPROC_DIR (wiped at start), so /metrics, answered by any of them, sums all.
nginx (the system binary, as the current user, its pid and temp files in the socket
directory, `daemon off`) balances them with least_conn. A process that dies is started
again on its socket. SIGTERM or SIGINT drains and stops the processes (each bounded by
SHUTDOWN_TIMEOUT_SECONDS), then nginx, and leaves nothing running.
`<socket-dir>/processes.json` names the current pid of each process index.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from app.api.webapp import web_dist
from app.config import Settings
from app.deploy.nginx import NginxParams, relay_error_log, render, socket_path
from app.metrics import MULTIPROC_ENV, mark_process_dead, reset_multiprocess_dir

log = logging.getLogger("ocupredict.supervisor")
nginx_log = logging.getLogger("ocupredict.nginx")

LOOPBACK = ("127.0.0.1/32", "::1/128")


def find_nginx() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise RuntimeError("nginx is not installed (Debian: apt-get install nginx)")
    return found


@dataclass
class Worker:
    index: int
    socket: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0


@dataclass
class Supervisor:
    settings: Settings
    processes: int
    host: str
    port: int
    socket_dir: Path
    tls: tuple[Path, Path] | None = None  # (certificate, key): HTTPS on the port
    workers: list[Worker] = field(default_factory=list)
    nginx: subprocess.Popen[bytes] | None = None
    nginx_relay: threading.Thread | None = None
    stopping: bool = False

    @property
    def metrics_dir(self) -> Path:
        return self.socket_dir / "metrics"

    def worker_env(self, index: int) -> dict[str, str]:
        env = dict(os.environ)
        trusted = [p for p in self.settings.trusted_proxies if p not in LOOPBACK]
        env.update(
            {
                "PROCESS_INDEX": str(index),
                "WEB_WORKERS": str(self.processes),
                MULTIPROC_ENV: str(self.metrics_dir),
                # nginx reaches the processes over Unix sockets (a local peer): its
                # X-Forwarded-For names the client for the rate limits and /metrics.
                "TRUSTED_PROXIES": ",".join([*LOOPBACK, *trusted]),
            }
        )
        # Multi-writer Galera: DATABASE_URL_<i>, when set, points process i at a node of
        # its own (README, "Database topologies").
        own_database = os.environ.get(f"DATABASE_URL_{index}")
        if own_database:
            env["DATABASE_URL"] = own_database
        return env

    def prepare(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        reset_multiprocess_dir(self.metrics_dir)
        self.workers = [Worker(i, socket_path(self.socket_dir, i)) for i in range(self.processes)]
        conf = render(
            NginxParams(
                listen=f"{self.host}:{self.port}",
                sockets=[w.socket for w in self.workers],
                runtime_dir=self.socket_dir,
                max_upload_mb=self.settings.max_upload_mb,
                keep_alive_seconds=self.settings.keep_alive_seconds,
                model_max_upload_mb=self.settings.model_max_upload_mb,
                max_body_kb=self.settings.max_body_kb,
                api_prefix=self.settings.api_prefix,
                trusted_proxies=tuple(self.settings.trusted_proxies),
                tls_cert=self.tls[0] if self.tls else None,
                tls_key=self.tls[1] if self.tls else None,
                web_root=web_dist(self.settings.web_dist_dir),
                user=pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None,
                error_log="stderr",  # relayed into this process's log (relay_error_log)
                json_logs=self.settings.json_logs,
            )
        )
        (self.socket_dir / "nginx.conf").write_text(conf, encoding="utf-8")

    def start_worker(self, worker: Worker) -> None:
        worker.socket.unlink(missing_ok=True)
        worker.proc = subprocess.Popen(
            [sys.executable, "-m", "app.deploy.worker", "--uds", str(worker.socket)],
            env=self.worker_env(worker.index),
            start_new_session=True,  # signals come from the supervisor, not the terminal
        )
        worker.started_at = time.monotonic()
        log.info("process %d started (pid %d)", worker.index, worker.proc.pid)
        self.write_pids()

    def write_pids(self) -> None:
        pids = {str(w.index): w.proc.pid for w in self.workers if w.proc is not None}
        tmp = self.socket_dir / "processes.json.tmp"
        tmp.write_text(json.dumps(pids), encoding="utf-8")
        tmp.replace(self.socket_dir / "processes.json")

    def start_nginx(self) -> None:
        conf = self.socket_dir / "nginx.conf"
        args = [find_nginx(), "-p", str(self.socket_dir), "-c", str(conf)]
        args += ["-e", "stderr"]
        check = subprocess.run([*args, "-t", "-q"], capture_output=True, check=False)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refused the configuration: {check.stderr.decode()}")
        self.nginx = subprocess.Popen(args, start_new_session=True, stderr=subprocess.PIPE)
        assert self.nginx.stderr is not None
        self.nginx_relay = threading.Thread(
            target=relay_error_log, args=(self.nginx.stderr, nginx_log), daemon=True
        )
        self.nginx_relay.start()
        log.info("nginx on %s:%d in front of %d processes", self.host, self.port, self.processes)

    def check_children(self) -> None:
        for worker in self.workers:
            proc = worker.proc
            if proc is None or proc.poll() is None:
                continue
            log.warning(
                "process %d (pid %d) exited with %s; starting it again",
                worker.index,
                proc.pid,
                proc.returncode,
            )
            mark_process_dead(proc.pid)
            worker.restarts += 1
            if time.monotonic() - worker.started_at < 5:
                time.sleep(1)  # a process that dies at start: do not spin
            self.start_worker(worker)
        if self.nginx is not None and self.nginx.poll() is not None:
            raise RuntimeError(f"nginx exited with {self.nginx.returncode}")

    def stop(self) -> None:
        """Drain and stop the processes (in parallel), then nginx; nothing stays running."""
        self.stopping = True
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 2 * self.settings.shutdown_timeout_seconds + 10
        for worker in self.workers:
            if worker.proc is None:
                continue
            try:
                worker.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("process %d did not stop in time; killing it", worker.index)
                worker.proc.kill()
                worker.proc.wait()
            mark_process_dead(worker.proc.pid)
            worker.socket.unlink(missing_ok=True)
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)  # graceful: finish the open responses
            try:
                self.nginx.wait(15)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        if self.nginx_relay is not None:
            self.nginx_relay.join(5)  # nginx's last lines, up to the end of its stderr
        log.info("stopped")

    def run(self) -> int:
        def request_stop(sig: int, frame: FrameType | None) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.prepare()
        code = 0
        try:
            for worker in self.workers:
                self.start_worker(worker)
            self.start_nginx()
            while not self.stopping:
                self.check_children()
                time.sleep(0.2)
        except RuntimeError as exc:
            log.error("%s", exc)
            code = 1
        finally:
            self.stop()
        return code
