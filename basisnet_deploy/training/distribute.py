"""Which ``tf.distribute`` strategy a training run uses, and who writes the checkpoint.

``multi-worker`` is TensorFlow's ``MultiWorkerMirroredStrategy``, configured by ``TF_CONFIG``
exactly as TensorFlow documents it::

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}'

Before the strategy is created, TF_CONFIG is validated (one-line error naming the key) and
every other task's address is probed with a TCP connect, retried until ``probe_seconds``:
an unreachable worker is a clear error in bounded time rather than a hang inside gRPC.
Only the chief (task ``chief`` 0, or ``worker`` 0 when there is no chief) writes the
checkpoint; the others write theirs to a temporary directory that is then removed (the
pattern of TensorFlow's multi-worker guide). TensorFlow is imported on use.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass

from basisnet_deploy.common.errors import UserError

STRATEGY_NAMES = ("default", "mirrored", "multi-worker")


def local_cluster(workers: int) -> list[str]:
    """``TF_CONFIG`` values for ``workers`` processes on this machine, one per task index:
    a cluster on 127.0.0.1 ports that were free when asked (try multi-worker on one host)."""
    sockets = [socket.socket() for _ in range(workers)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        addresses = [f"127.0.0.1:{sock.getsockname()[1]}" for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    return [json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}})
            for i in range(workers)]


@dataclass(frozen=True)
class Cluster:
    """A validated TF_CONFIG: every task's address, and this process's task."""

    tasks: dict  # type -> list of "host:port"
    task_type: str
    task_index: int

    @property
    def is_chief(self) -> bool:
        if "chief" in self.tasks:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.task_index == 0

    @property
    def address(self) -> str:
        return self.tasks[self.task_type][self.task_index]

    def others(self) -> list[str]:
        return [a for addrs in self.tasks.values() for a in addrs if a != self.address]


def parse_tf_config(text: str | None) -> Cluster:
    """Validate ``TF_CONFIG``; a :class:`UserError` naming the problem in one line."""
    if not text:
        raise UserError("--strategy multi-worker: TF_CONFIG is not set; set it to "
                        '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": N}}')
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"TF_CONFIG: invalid JSON at column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cluster"), dict):
        raise UserError("TF_CONFIG: needs a 'cluster' object mapping task types to address lists")
    task = data.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise UserError("TF_CONFIG: needs a 'task' object with 'type' and 'index'")
    tasks = {}
    for kind, addrs in data["cluster"].items():
        if kind not in ("chief", "worker", "evaluator", "ps"):
            raise UserError(f"TF_CONFIG: cluster.{kind}: unknown task type; use 'chief' and 'worker'")
        if kind in ("evaluator", "ps"):
            raise UserError(f"TF_CONFIG: cluster.{kind}: not used by multi-worker training")
        if not isinstance(addrs, list) or not addrs or not all(_host_port(a) for a in addrs):
            raise UserError(f"TF_CONFIG: cluster.{kind} must be a non-empty list of 'host:port'")
        tasks[kind] = addrs
    kind, index = task["type"], task["index"]
    if kind not in tasks or not isinstance(index, int) or not 0 <= index < len(tasks[kind]):
        raise UserError(f"TF_CONFIG: task {kind}:{index} is not in the cluster {sorted(tasks)}")
    return Cluster(tasks, kind, index)


def _host_port(address) -> tuple[str, int] | None:
    if not isinstance(address, str) or ":" not in address:
        return None
    host, _, port = address.rpartition(":")
    return (host, int(port)) if port.isdigit() and 0 < int(port) < 65536 and host else None


def probe(cluster: Cluster, seconds: float) -> None:
    """Wait until every other task accepts a TCP connection, at most ``seconds`` in all."""
    deadline = time.monotonic() + seconds
    for address in cluster.others():
        host, port = _host_port(address)
        while True:
            try:
                with socket.create_connection((host, port), timeout=2.0):
                    break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise UserError(f"TF_CONFIG: worker {address} unreachable after {seconds:.0f} s "
                                    f"({e.strerror or e}); start every worker, check host and port") from None
                time.sleep(0.5)


def make_strategy(name: str, probe_seconds: float = 120.0):
    """(strategy, is_chief) for ``--strategy``; multi-worker validates and probes first."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy(), True
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), True
    if name != "multi-worker":
        raise UserError(f"--strategy: unknown {name!r}; choose one of {list(STRATEGY_NAMES)}")
    cluster = parse_tf_config(os.environ.get("TF_CONFIG"))
    # The server must be listening before peers probe it: create the strategy (which starts
    # this task's server) only after every peer answers.
    _listen_briefly(cluster, probe_seconds)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return strategy, cluster.is_chief


def _listen_briefly(cluster: Cluster, seconds: float) -> None:
    """Probe peers while answering their probes on our own port, then release the port."""
    import threading

    host, port = _host_port(cluster.address)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(("", port))
    except OSError as e:
        raise UserError(f"TF_CONFIG: cannot listen on {cluster.address} ({e.strerror or e}); "
                        "is another process using the port?") from None
    server.listen(16)
    server.settimeout(0.2)
    done = threading.Event()

    def answer():
        while not done.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                pass

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        probe(cluster, seconds)
        time.sleep(1.0)  # let slower peers finish probing us
    finally:
        done.set()
        thread.join()
        server.close()
