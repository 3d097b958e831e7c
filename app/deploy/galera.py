"""A 3-node MariaDB Galera cluster on loopback, for the tests and bench/galera_soak.py.

    with GaleraCluster(nodes=3) as cluster:        # starts, waits until all are Synced
        cluster.url(0, "mydb")                     # mysql+aiomysql://root@127.0.0.1:P/mydb
        cluster.kill(1)                            # SIGKILL node 1 (its process group)
        cluster.restart(1)                         # rejoins (IST, else SST); waits Synced
    # here nothing of it runs any more (stop() raises if something did not stop)

Each node is Debian's `mariadbd --no-defaults` with galera-4 (/usr/lib/galera), its own
data directory (made by mariadb-install-db, owned by mysql; the server runs with
--user=mysql, which the rsync SST needs) and four free loopback ports: SQL, group
communication, IST and SST. Node 0 bootstraps the cluster (--wsrep-new-cluster); the
others join it by SST. A restarted node first recovers its position from InnoDB
(`mariadbd --wsrep-recover`, as galera_recovery does) so it can rejoin by IST. Every
mariadbd runs in a process group of its own (SST scripts and their rsync daemons
included), so kill() and stop() reach all of it. The machine's own MariaDB (3306) is
never touched. `GaleraCluster(nodes=1, wsrep=False)` is one plain MariaDB with the same
settings (bench/galera_soak.py's baseline).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from app.deploy.galera_node import (
    SERVER_USER,
    Node,
    NodeStatus,
    group_alive,
    install_datadir,
    missing_requirements,
    server_args,
    server_ids,
)


class GaleraCluster:
    def __init__(
        self,
        nodes: int = 3,
        *,
        base_dir: Path | None = None,
        cluster_name: str = "ocupredict",
        buffer_pool_mb: int = 96,
        keep_dir: bool = False,
        wsrep: bool = True,
    ) -> None:
        if nodes < 1 or (not wsrep and nodes != 1):
            raise ValueError("a cluster has at least one node; without wsrep, exactly one")
        self.wsrep = wsrep
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="ocupredict-galera-"))
        self.cluster_name = cluster_name
        self.buffer_pool_mb = buffer_pool_mb
        self.keep_dir = keep_dir
        self.nodes = [Node(i, self.base_dir / f"node{i}") for i in range(nodes)]
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None
        self._pgids: set[int] = set()

    # ------------------------------------------------------------------ addresses

    def url(self, index: int, database: str = "", driver: str = "mysql+aiomysql") -> str:
        node = self.nodes[index]
        return f"{driver}://root@127.0.0.1:{node.port}/{database}?charset=utf8mb4"

    def connect(self, index: int, database: str | None = None, timeout: float = 5) -> Any:
        """A plain PyMySQL connection (autocommit) to node `index`, for checks."""
        import pymysql

        return pymysql.connect(
            host="127.0.0.1",
            port=self.nodes[index].port,
            user="root",
            database=database,
            connect_timeout=int(max(1, timeout)),
            read_timeout=60,
            autocommit=True,
        )

    def query(self, index: int, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        with contextlib.closing(self.connect(index)) as conn, conn.cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())

    def status(self, index: int) -> NodeStatus:
        rows = dict(self.query(index, "SHOW GLOBAL STATUS LIKE 'wsrep%'"))
        return NodeStatus(
            cluster_size=int(rows.get("wsrep_cluster_size") or 0),
            state=str(rows.get("wsrep_local_state_comment") or ""),
            ready=rows.get("wsrep_ready") == "ON",
            primary=rows.get("wsrep_cluster_status") == "Primary",
            last_committed=int(rows.get("wsrep_last_committed") or -1),
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 240) -> GaleraCluster:
        """Initialise every data directory, bootstrap node 0, join the others; returns
        once every node is Synced in a cluster of all of them. Stops what it started
        when that fails."""
        began = time.monotonic()
        try:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            # The mysql user only walks through to its node's directory.
            os.chmod(self.base_dir, 0o711)  # noqa: S103
            install_datadir(self.nodes[0])
            for node in self.nodes[1:]:
                # A joiner's data is replaced by SST anyway: a copy of node 0's fresh
                # system tables saves a mariadb-install-db run per node.
                node.root.mkdir(parents=True, exist_ok=True)
                shutil.copytree(self.nodes[0].datadir, node.datadir, symlinks=True)
                shutil.chown(node.root, SERVER_USER, SERVER_USER)
                self._chown(node.datadir)
            self._launch(self.nodes[0], bootstrap=True)
            if not self.wsrep:
                self._wait_answers(self.nodes[0], timeout)
            else:
                self.wait_synced([0], size=1, timeout=timeout)
            for node in self.nodes[1:]:
                self._launch(node)
                # One joiner at a time: node 0 is the donor of each SST.
                self.wait_synced([node.index], size=node.index + 1, timeout=timeout)
            if self.wsrep:
                self.wait_synced(timeout=timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def wait_synced(
        self, indexes: list[int] | None = None, *, size: int | None = None, timeout: float = 240
    ) -> None:
        """Until the given nodes (default all) are Synced in a cluster of `size` (default
        all nodes)."""
        indexes = list(range(len(self.nodes))) if indexes is None else indexes
        size = len(self.nodes) if size is None else size
        deadline = time.monotonic() + timeout
        last: dict[int, NodeStatus | str] = {}
        while True:
            for index in indexes:
                node = self.nodes[index]
                if not node.running():
                    code = node.proc.returncode if node.proc else None
                    raise RuntimeError(f"{node.name} exited ({code}):\n{self.log_tail(index)}")
                try:
                    last[index] = self.status(index)
                except Exception as exc:  # not accepting connections yet
                    last[index] = f"{type(exc).__name__}: {exc}"
            if all(
                isinstance(s, NodeStatus) and s.synced and s.cluster_size == size
                for s in last.values()
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"nodes {indexes} not Synced in a cluster of {size} after {timeout:.0f} s: "
                    f"{last}\n{self.log_tail(indexes[-1])}"
                )
            time.sleep(0.2)

    def _wait_answers(self, node: Node, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not node.running():
                raise RuntimeError(f"{node.name} exited:\n{self.log_tail(node.index)}")
            try:
                self.query(node.index, "SELECT 1")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def kill(self, index: int) -> None:
        """SIGKILL the node: its mariadbd and anything in its process group."""
        node = self.nodes[index]
        if node.pgid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pgid, signal.SIGKILL)
        if node.proc is not None:
            node.proc.wait(30)
        self._reap_group(node)

    def restart(self, index: int, timeout: float = 240) -> float:
        """Start a stopped (or killed) node again and wait until it has rejoined: Synced,
        with every node in the cluster. Returns the seconds that took."""
        node = self.nodes[index]
        if node.running():
            raise RuntimeError(f"{node.name} is still running")
        began = time.monotonic()
        position = self._recover_position(node)
        self._launch(node, start_position=position)
        self.wait_synced(timeout=timeout)
        return time.monotonic() - began

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM every node (a clean shutdown), then SIGKILL whatever is left of their
        process groups; raises if anything still runs afterwards."""
        began = time.monotonic()
        for node in self.nodes:
            if node.running() and node.proc is not None:
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        stubborn = []
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stubborn.append(node.name)
        for pgid in self._pgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.wait(10)
            self._reap_group(node)
        left = [pgid for pgid in self._pgids if group_alive(pgid)]
        self.stop_seconds = time.monotonic() - began
        if not self.keep_dir and not left:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        if left:
            raise RuntimeError(f"process groups left running after stop: {left}")
        if stubborn:
            raise RuntimeError(f"{', '.join(stubborn)} ignored SIGTERM and were killed")

    def log_tail(self, index: int, lines: int = 40) -> str:
        try:
            text = self.nodes[index].error_log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> GaleraCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals

    def _chown(self, path: Path) -> None:
        shutil.chown(path, SERVER_USER, SERVER_USER)
        for parent, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                os.chown(Path(parent, name), *server_ids(), follow_symlinks=False)

    def _launch(
        self, node: Node, *, bootstrap: bool = False, start_position: str | None = None
    ) -> None:
        args = server_args(
            node,
            self.nodes,
            wsrep=self.wsrep,
            cluster_name=self.cluster_name,
            buffer_pool_mb=self.buffer_pool_mb,
        )
        if bootstrap and self.wsrep:
            args.append("--wsrep-new-cluster")
        if start_position:
            args.append(f"--wsrep-start-position={start_position}")
        node.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: SST children die with it
        )
        node.pgid = node.proc.pid
        node.starts += 1
        self._pgids.add(node.pgid)

    def _recover_position(self, node: Node) -> str | None:
        """The node's last committed position from InnoDB (after a crash grastate.dat
        says seqno -1), so that it can ask the donor for IST instead of a full SST."""
        log = node.root / "recover.err"
        log.unlink(missing_ok=True)
        args = [
            a
            for a in server_args(
                node,
                self.nodes,
                wsrep=self.wsrep,
                cluster_name=self.cluster_name,
                buffer_pool_mb=self.buffer_pool_mb,
            )
            if not a.startswith("--log-error=")
        ]
        args += [f"--log-error={log}", "--wsrep-recover"]
        proc = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            start_new_session=True,
            timeout=120,
            check=False,
        )
        text = log.read_text(errors="replace") if log.exists() else ""
        text += proc.stderr.decode(errors="replace")
        match = re.search(r"Recovered position:\s*([0-9a-f-]{36}:-?\d+)", text)
        if match is None or match.group(1).endswith(":-1"):
            return None  # nothing to recover: the node joins by SST
        return match.group(1)

    def _reap_group(self, node: Node) -> None:
        """Wait (briefly) until nothing of the node's process group is left."""
        if node.pgid is None:
            return
        deadline = time.monotonic() + 10
        while group_alive(node.pgid) and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(node.pgid, signal.SIGKILL)
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    """`python -m app.deploy.galera`: start a cluster, SIGKILL and restart one node, stop
    it; print how long each step took."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--writes", type=int, default=200, help="rows written while down")
    args = parser.parse_args(argv)
    reason = missing_requirements()
    if reason:
        print(f"galera: cannot run here: {reason}")
        return 2
    cluster = GaleraCluster(nodes=args.nodes)
    try:
        cluster.start()
        print(f"galera: {args.nodes} nodes Synced in {cluster.start_seconds:.1f} s")
        cluster.query(0, "CREATE DATABASE harness")
        cluster.query(0, "CREATE TABLE harness.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        victim = args.nodes - 1
        began = time.monotonic()
        cluster.kill(victim)
        for n in range(args.writes):
            cluster.query(n % victim, "INSERT INTO harness.t (v) VALUES (%s)", (n,))
        print(
            f"galera: node {victim} SIGKILLed; {args.writes} rows written on the others in "
            f"{time.monotonic() - began:.1f} s (the first wait for its eviction)"
        )
        took = cluster.restart(victim)
        count = cluster.query(victim, "SELECT COUNT(*) FROM harness.t")[0][0]
        how = "IST" if "IST received" in cluster.nodes[victim].error_log.read_text() else "SST"
        print(f"galera: node {victim} rejoined by {how} in {took:.1f} s; it has {count} rows")
    finally:
        cluster.stop()
        print(f"galera: stopped in {cluster.stop_seconds or 0:.1f} s; nothing left running")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
