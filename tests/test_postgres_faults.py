"""Faults of a PostgreSQL store with real processes: the server restarted under two workers and a
dispatcher, a network cut between one worker and the server, and kill -9 of workers every second.

Every wait polls the log (or a process) for a condition with a deadline. The checks read the
whole log: each job must have exactly one ``JobSucceeded``, reported under a lease that was still
valid when it was written (:func:`tests.test_faults.check_log`).
"""

from __future__ import annotations

import contextlib
import os
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from helpers import wait_until

import evq
from evq.eventlog.codec import to_json_obj
from tests import test_e2e as e2e
from tests.cli_jobs import CliWork
from tests.test_e2e import APP, ROOT, Evq, evq_env, run_evq
from tests.test_faults import check_log

spawn = e2e.spawn  # the fixture that starts evq processes

pytestmark = pytest.mark.slow
CLUSTER = ("15", "main")
JOBS = int(os.environ.get("EVQ_FAULT_JOBS", "5000"))

Row = tuple[int, str, int, dict[str, Any]]


def log_rows(url: str) -> list[Row]:
    """The whole log through the API: (seq, type, job id, body) in order."""
    with contextlib.closing(evq.connect(url)) as q:
        return [(o["seq"], o["type"], o["job_id"], o)
                for o in map(to_json_obj, q.events())]


def count(url: str, kind: str) -> int:
    """Events of type ``kind`` in the log (SQL on the store's schema)."""
    with contextlib.closing(evq.connect(url)) as q:
        return q.store.log.execute("SELECT count(*) FROM events WHERE type = ?", (kind,))[0][0]


def replay_verify(url: str) -> None:
    res = run_evq(url, "replay", "--since", "0", "--verify", timeout=120)
    assert res.returncode == 0 and " 0 differences" in res.stdout, res.stdout + res.stderr


def worker(spawn: Callable[..., Evq], url: str, *options: Any) -> Evq:
    return spawn(url, "work", "--app", APP, "--sleep", "0.2", *options)


def stopped(p: Evq) -> None:
    """SIGTERM, once it has started (before, its handler is not in place): the worker ends
    cleanly, with no traceback."""
    wait_until(lambda: "evq worker" in p.stderr, what="the worker's start line")
    p.signal(signal.SIGTERM)
    assert p.wait(30) == 0, p.stderr
    assert "Traceback" not in p.stderr, p.stderr


def pg_ready() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"],
                          check=False).returncode == 0


@pytest.fixture
def restartable(postgres_url: str) -> Iterator[Callable[[], float]]:
    """Restart the server (returns the seconds it took); it is up again after the test,
    whatever happened."""
    if subprocess.run(["pg_ctlcluster", "--help"], capture_output=True,
                      check=False).returncode not in (0, 1) or os.geteuid() != 0:
        pytest.skip("cannot restart the PostgreSQL cluster here")

    def restart() -> float:
        started = time.monotonic()
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *CLUSTER, "restart"],
                       check=True, capture_output=True, timeout=60)
        wait_until(pg_ready, timeout=30, interval=0.05, what="the server to accept connections")
        return time.monotonic() - started

    try:
        yield restart
    finally:
        if not pg_ready():
            subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *CLUSTER, "start"],
                           check=False, capture_output=True, timeout=60)
            wait_until(pg_ready, timeout=30, interval=0.1, what="the server to be back")


# -- the server restarts ------------------------------------------------------------------------

DISPATCHER = """
import logging, sys, threading
import evq
from evq.eventlog.errors import StoreError
from tests.cli_jobs import CliWork
logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
q = evq.connect({url!r})
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
failures = 0
while not stop.is_set():
    try:
        ids = q.dispatch_many([CliWork(seconds=0.001) for _ in range(5)])
    except StoreError as exc:  # what an application does: try again a little later
        failures += 1
        print(f"dispatch failed, retrying: {{exc}}", file=sys.stderr, flush=True)
        stop.wait(0.05)
        continue
    print(*ids, flush=True)
    stop.wait(0.01)  # a steady trickle of work, not a synchronisation
print(f"failures {{failures}}", file=sys.stderr, flush=True)
q.close()
"""


class Dispatcher:
    """The dispatcher script in a process of its own; ``acked`` collects the ids it printed."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", DISPATCHER.format(url=url)],
                                     cwd=ROOT, env=evq_env(None), text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.acked: list[int] = []
        self.err: list[str] = []
        self._pumps = [threading.Thread(target=self._pump, args=(s, f), daemon=True)
                       for s, f in ((self.proc.stdout, self._ids), (self.proc.stderr,
                                                                    self.err.append))]
        for t in self._pumps:
            t.start()

    def _ids(self, line: str) -> None:
        self.acked.extend(map(int, line.split()))

    @staticmethod
    def _pump(stream: IO[str], take: Callable[[str], None]) -> None:
        with stream:
            for line in stream:
                take(line)

    def finish(self) -> int:
        """Tell it to stop (a line on its stdin); its exit code once its output is read."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("stop\n")
        self.proc.stdin.close()
        code = self.proc.wait(30)
        for t in self._pumps:
            t.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def test_server_restart_under_two_workers_and_a_dispatcher(
        postgres_url: str, restartable: Callable[[], float], spawn: Callable[..., Evq]) -> None:
    url = postgres_url
    with contextlib.closing(evq.connect(url)) as q:
        ids = q.dispatch_many([CliWork(seconds=0.001) for _ in range(3000)])
    workers = [worker(spawn, url, "-c", "2", "--lease", "2") for _ in range(2)]
    d = Dispatcher(url)
    try:
        wait_until(lambda: count(url, "JobSucceeded") >= 500 and len(d.acked) >= 20,
                   timeout=30, what="the workers and the dispatcher to get going")
        down = restartable()
        before = len(d.acked)
        for w in workers:
            wait_until(lambda w=w: "reconnected to" in w.stderr, timeout=30,
                       what="each worker to reconnect")
        wait_until(lambda: len(d.acked) > before + 20 or d.proc.poll() is not None,
                   timeout=30, what="the dispatcher to dispatch again")
        assert d.proc.poll() is None, "the dispatcher died on the restart:\n" + "".join(d.err)
        assert d.finish() == 0
    finally:
        d.kill()
    derr = "".join(d.err)
    assert "Traceback" not in derr and "reconnected to" in derr, derr
    every = ids + d.acked
    wait_until(lambda: count(url, "JobSucceeded") >= len(every), timeout=60,
               what="every job to succeed")
    for w in workers:
        assert w.proc.poll() is None, w.stderr
        stopped(w)
        assert "lost the connection to" in w.stderr and "reconnected to" in w.stderr
    rows = log_rows(url)
    dispatched = {job for _, kind, job, _ in rows if kind == "JobDispatched"}
    assert set(every) <= dispatched, "acknowledged dispatches missing from the log"
    # A worker whose outcome could not be written for longer than its 2 s lease (the restart
    # took that long on a busy machine) has its late success recorded as stale, which changes
    # nothing: what must hold is one success per job under a valid lease.
    check_log(rows, sorted(dispatched), stale_ok=True)
    replay_verify(url)
    print(f"\npg restart: {len(dispatched)} jobs ({len(d.acked)} dispatched meanwhile, "
          f"{derr.count('dispatch failed')} dispatches retried), 2 workers reconnected, "
          f"0 lost, 0 duplicates, server restarted in {down:.2f}s")


# -- a network cut -------------------------------------------------------------------------------


class Proxy:
    """A TCP proxy on 127.0.0.1 to the PostgreSQL server, which can cut every connection (and
    refuse new ones) and be restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_off = False
        self._dropping: list[list[str]] = []  # iptables rules in place
        self.connections = 0
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if self.cut_off or self._closed:
                    client.close()  # refused
                    continue
                try:
                    server = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                self._socks += [client, server]
                self.connections += 1
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in sel.select():
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        with self._lock:
            self.cut_off = True
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def drop(self) -> None:
        """Cut by dropping every packet to and from the proxy's port (iptables): nothing
        tells either side, as when a network fails between two machines."""
        with self._lock:  # and the proxy's own connections to the server
            ends = [s.getsockname()[1] for s in self._socks[1::2]]
        rules = [["--dport", str(self.port)], ["--sport", str(self.port)]]
        rules += [[f"--{a}port", str(end)] for end in ends for a in ("s", "d")]
        for rule in rules:
            rule = ["INPUT", "-p", "tcp", *rule, "-j", "DROP"]
            subprocess.run(["iptables", "-I", *rule], check=True, capture_output=True)
            self._dropping.append(rule)

    def restore(self) -> None:
        while self._dropping:
            subprocess.run(["iptables", "-D", *self._dropping.pop()], check=False,
                           capture_output=True)
        with self._lock:
            self.cut_off = False

    def close(self) -> None:
        self._closed = True
        self.restore()
        self.cut()
        self.listener.close()

    def url(self, url: str) -> str:
        """``url`` (same user, database and options) through this proxy."""
        parts = urlsplit(url)
        user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))


def can_drop_packets() -> bool:
    return shutil.which("iptables") is not None and subprocess.run(
        ["iptables", "-S", "INPUT"], capture_output=True, check=False).returncode == 0


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[Proxy]:
    parts = urlsplit(postgres_url)
    p = Proxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    yield p
    p.close()


@pytest.mark.parametrize("how", ["reset", "drop"])
def test_a_network_cut_worker_s_late_outcomes_are_stale(
        postgres_url: str, proxy: Proxy, spawn: Callable[..., Evq], how: str) -> None:
    """``reset``: the proxy closes every connection and refuses new ones; ``drop``: packets
    are dropped, so the worker learns of the cut only from its TCP keepalives and timeouts."""
    if how == "drop" and not can_drop_packets():
        pytest.skip("needs iptables (as root) to drop packets")
    url = postgres_url
    with contextlib.closing(evq.connect(url)) as q:
        ids = q.dispatch_many([CliWork(seconds=2.0) for _ in range(6)])
        cut = worker(spawn, proxy.url(url), "-c", "3", "--lease", "1")
        wait_until(lambda: sum(j.state == "running" for j in q.jobs("running")) == 3,
                   what="the cut worker to run three jobs")
        held = sorted(j.id for j in q.jobs("running"))
        proxy.drop() if how == "drop" else proxy.cut()
        cut_at = time.monotonic()
        direct = worker(spawn, url, "-c", "3", "--lease", "1")
        wait_until(lambda: "lost the connection to" in cut.stderr, timeout=30,
                   what="the cut worker to notice the cut")
        noticed = time.monotonic() - cut_at
        wait_until(lambda: {q.job(i).state for i in held} == {"succeeded"}, timeout=30,
                   what="the other worker to run the cut worker's jobs")
        taken = time.monotonic() - cut_at
        assert cut.proc.poll() is None, cut.stderr
        proxy.restore()
        stale: Callable[[], list[int]] = lambda: sorted(  # noqa: E731
            job for _, kind, job, body in log_rows(url)
            if kind == "JobSucceeded" and body["attempt"] == 1 and job in held)
        wait_until(lambda: stale() == held, timeout=30,
                   what="the cut worker's outcomes to be written after the restore")
        wait_until(lambda: {q.job(i).state for i in ids} == {"succeeded"}, timeout=30,
                   what="every job to succeed")
        results = {i: q.job(i).attempt for i in held}
    stopped(cut)
    stopped(direct)
    assert "reconnected to" in cut.stderr, cut.stderr
    kinds = check_log(log_rows(url), ids, stale_ok=True)
    for job in held:  # lost by the cut, run again, and the late success kept as a record
        assert kinds[job].count("JobSucceeded") == 2 and "LeaseExpired" in kinds[job]
        assert results[job] == 2
    replay_verify(url)
    print(f"\nnetwork cut ({how}): {len(ids)} jobs, {len(held)} held by the cut worker, "
          f"noticed by it {noticed:.2f}s after the cut, run again by the other {taken:.2f}s "
          f"after it (lease 1s, 2s jobs), {len(held)} stale successes recorded, 0 duplicates")


# -- kill -9, every second ------------------------------------------------------------------------


def test_kill_9_of_a_random_worker_every_second(postgres_url: str,
                                                spawn: Callable[..., Evq]) -> None:
    url = postgres_url
    with contextlib.closing(evq.connect(url)) as q:
        ids = q.dispatch_many([CliWork(seconds=0.0005) for _ in range(JOBS)])
    options = ("-c", "2", "--lease", "1")
    workers = [worker(spawn, url, *options) for _ in range(4)]
    rng = random.Random(JOBS)
    kills = 0
    started = time.monotonic()
    deadline = started + 80
    while count(url, "JobSucceeded") < len(ids):
        assert time.monotonic() < deadline, f"not done after 80s ({kills} kills)"
        time.sleep(1.0)  # the fault schedule: one kill a second
        victim = rng.randrange(len(workers))
        workers[victim].proc.kill()
        assert workers[victim].wait(10) == -signal.SIGKILL
        kills += 1
        for i, w in enumerate(workers):
            assert i == victim or w.proc.poll() is None, w.stderr
        workers[victim] = worker(spawn, url, *options)
    took = time.monotonic() - started
    for w in workers:
        stopped(w)
    rows = log_rows(url)
    kinds = check_log(rows, ids)
    expired = sum(k.count("LeaseExpired") for k in kinds.values())
    replay_verify(url)
    print(f"\nkill -9 every second: {len(ids)} jobs (EVQ_FAULT_JOBS), 4 workers, {kills} kills, "
          f"{expired} leases expired, 0 duplicates, {took:.1f}s")


# -- a claim's write lost after its job started ---------------------------------------------------


def test_a_claim_lost_after_its_job_started_runs_the_job_again(postgres_url: str) -> None:
    """On PostgreSQL a worker starts a job as soon as its lease is decided, while the lease is
    being written. The connection is cut right then (its server process terminated): the lease
    never commits, the run that started without it reports stale outcomes, which change nothing,
    and the job runs again under a lease, once; the projections replay clean."""
    from jobs import Add

    with contextlib.closing(evq.connect(postgres_url)) as q:
        job = q.dispatch(Add(a=1, b=2))
        log = q.store.log
        claim = q.store.claim
        cut: list[int] = []

        def cutting(queues: Any, now: float, limit: int, lease: Any, names: Any = None,
                    decided: Any = None) -> Any:
            def lease_then_cut(row: Any) -> Any:
                if not cut:
                    cut.append(log._conn.info.backend_pid)
                    with contextlib.closing(evq.connect(postgres_url)) as other:
                        other.store.log.execute("SELECT pg_terminate_backend(?)", (cut[0],))
                return lease(row)

            return claim(queues, now, limit, lease_then_cut, names, decided)

        q.store.claim = cutting  # type: ignore[method-assign]
        done = q.worker(stop_when_empty=True, sleep=0.05).run()
        assert cut and done == 2  # the run without a lease, and the one under it
        rows = log_rows(postgres_url)
        kinds = check_log(rows, [job], stale_ok=True)[job]
        assert kinds.count("JobLeased") == 1 and kinds.count("JobSucceeded") == 2, kinds
        leased = kinds.index("JobLeased")
        assert kinds[leased:] == ["JobLeased", "JobStarted", "JobSucceeded"], kinds
        assert q.job(job).state == "succeeded" and q.store.verify() == []
