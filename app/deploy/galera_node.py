"""The pieces of a Galera test cluster that concern one node: what it needs on this
machine, its ports and files, its mariadbd command line, and its process group
(app.deploy.galera puts three of them together)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from app.deploy.harness import free_port, pid_alive

GALERA_PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
MARIADBD = "mariadbd"
INSTALL_DB = "mariadb-install-db"
SERVER_USER = "mysql"

# Fast failure detection on loopback: a SIGKILLed node is evicted within a few seconds
# (until then the others wait for it before they commit), and a small gcache so that a
# node down for a minute still rejoins by IST.
PROVIDER_OPTIONS = (
    "evs.keepalive_period=PT0.5S",
    "evs.suspect_timeout=PT3S",
    "evs.inactive_timeout=PT6S",
    "evs.inactive_check_period=PT0.5S",
    "evs.install_timeout=PT6S",
    "gcache.size=128M",
    "pc.weight=1",
)


def missing_requirements() -> str | None:
    """Why a cluster cannot run here, or None when it can."""
    if not GALERA_PROVIDER.exists():
        return f"{GALERA_PROVIDER} is absent (Debian's galera-4)"
    for tool in (MARIADBD, INSTALL_DB, "rsync"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} is not installed"
    if os.geteuid() != 0:
        return "starting mariadbd --user=mysql needs root"
    try:
        import pwd

        pwd.getpwnam(SERVER_USER)
    except KeyError:
        return f"there is no {SERVER_USER} user"
    return None


def server_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(SERVER_USER)
    return entry.pw_uid, entry.pw_gid


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@dataclass
class Node:
    index: int
    root: Path
    port: int = field(default_factory=free_port)
    gcomm_port: int = field(default_factory=free_port)
    ist_port: int = field(default_factory=free_port)
    sst_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    pgid: int | None = None
    starts: int = 0

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    @property
    def error_log(self) -> Path:
        return self.root / "mysqld.err"

    @property
    def name(self) -> str:
        return f"node{self.index}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass(frozen=True)
class NodeStatus:
    cluster_size: int
    state: str  # wsrep_local_state_comment: Synced, Donor/Desynced, Joining, Joined, ...
    ready: bool  # wsrep_ready
    primary: bool  # wsrep_cluster_status == Primary
    last_committed: int

    @property
    def synced(self) -> bool:
        return self.ready and self.primary and self.state == "Synced"


def install_datadir(node: Node) -> None:
    """A fresh data directory for the node, owned by mysql (mariadb-install-db)."""
    node.root.mkdir(parents=True, exist_ok=True)
    shutil.chown(node.root, SERVER_USER, SERVER_USER)
    subprocess.run(
        [
            _binary(INSTALL_DB),
            "--no-defaults",
            f"--datadir={node.datadir}",
            f"--user={SERVER_USER}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ],
        check=True,
        capture_output=True,
    )


def server_args(
    node: Node, nodes: list[Node], *, wsrep: bool, cluster_name: str, buffer_pool_mb: int
) -> list[str]:
    """mariadbd's command line for `node` of a cluster of `nodes` (plain MariaDB without
    `wsrep`)."""
    peers = ",".join(f"127.0.0.1:{n.gcomm_port}" for n in nodes)
    provider_options = ";".join(
        (
            f"gmcast.listen_addr=tcp://127.0.0.1:{node.gcomm_port}",
            f"ist.recv_addr=127.0.0.1:{node.ist_port}",
            *PROVIDER_OPTIONS,
        )
    )
    args = [
        _binary(MARIADBD),
        "--no-defaults",
        f"--user={SERVER_USER}",
        f"--datadir={node.datadir}",
        f"--socket={node.socket}",
        f"--pid-file={node.root / 'mysqld.pid'}",
        f"--log-error={node.error_log}",
        f"--port={node.port}",
        "--bind-address=127.0.0.1",
        "--skip-name-resolve",
        "--character-set-server=utf8mb4",
        "--collation-server=utf8mb4_unicode_ci",
        "--max-connections=400",
        f"--innodb-buffer-pool-size={buffer_pool_mb}M",
        "--innodb-log-file-size=48M",
        "--performance-schema=OFF",
        # What Galera requires: row-based replication, InnoDB, interleaved auto-inc.
        "--binlog-format=ROW",
        "--default-storage-engine=InnoDB",
        "--innodb-autoinc-lock-mode=2",
        # A commit is durable once replicated; the log is written (not synced) per
        # commit, which survives the SIGKILL of a node (the usual Galera setting).
        "--innodb-flush-log-at-trx-commit=2",
    ]
    if not wsrep:
        return args
    return [
        *args,
        "--wsrep-on=ON",
        f"--wsrep-provider={GALERA_PROVIDER}",
        f"--wsrep-cluster-name={cluster_name}",
        f"--wsrep-cluster-address=gcomm://{peers}",
        f"--wsrep-node-name={node.name}",
        f"--wsrep-node-address=127.0.0.1:{node.gcomm_port}",
        f"--wsrep-node-incoming-address=127.0.0.1:{node.port}",
        f"--wsrep-provider-options={provider_options}",
        "--wsrep-sst-method=rsync",
        f"--wsrep-sst-receive-address=127.0.0.1:{node.sst_port}",
        "--wsrep-slave-threads=2",
        # Causal reads: a read waits until the node has applied every transaction
        # committed anywhere before it began, so a request that follows another on
        # a different node sees its writes (a refresh token just issued, ...).
        "--wsrep-sync-wait=1",
    ]


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in process group `pgid`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return pid_alive(int(entry.name))
    return False
