"""dbos's runner (see peer_runner.py for the commands), run with the Python of its venv.

dbos's durable queues with their defaults on PostgreSQL (127.0.0.1:5432; a database of its own,
``evq_bench_dbos``, made afresh before each run, as DBOS's system database, its tables made with
``dbos migrate -s URL`` and the queue registered with ``client.register_queue("bench")``): the
job is a workflow, ``@DBOS.workflow(name="noop")`` (a no-op, so no step); a ``DBOSClient``
enqueues it with ``client.enqueue({"queue_name": "bench", "workflow_name": "noop",
"workflow_id": "N"}, N)`` one at a time (dbos has no bulk enqueue: ``enqueue_in_transaction``
inserts them one by one); per worker process ``DBOS(config={...})`` with an ``executor_id`` of
its own (which its docs ask for when several processes serve one queue), then
``DBOS.launch()`` and ``DBOS.register_queue("bench")``, whose queue thread polls the queue every
second (its default ``polling_interval_sec``) and runs the workflows it dequeues in its thread
pool. Start and completion come from dbos's own records: the ``dbos.workflow_status`` row of
each workflow (its id is the job's argument), ``started_at_epoch_ms`` (set when dequeued) and,
once its status is ``SUCCESS``, ``updated_at`` (ms).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import psycopg
from dbos import DBOS, DBOSClient
from peer_runner import Peer, fail, fresh_database, main

DATABASE = "evq_bench_dbos"
URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
QUEUE = "bench"
COLUMN = {"start": "started_at_epoch_ms", "end": "updated_at"}
WHERE = {"start": "started_at_epoch_ms IS NOT NULL", "end": "status = 'SUCCESS'"}


@DBOS.workflow(name="noop")
def noop(n: int) -> None:
    pass


class DbosPeer(Peer):
    name = "dbos"
    client: DBOSClient | None = None
    records: psycopg.Connection | None = None

    def reset(self) -> None:
        fresh_database(DATABASE)
        dbos = os.path.join(os.path.dirname(sys.executable), "dbos")
        done = subprocess.run([dbos, "migrate", "-s", URL], capture_output=True, text=True)
        if done.returncode != 0:
            fail(f"dbos migrate: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
        self.client = DBOSClient(system_database_url=URL)
        self.client.register_queue(QUEUE)

    def enqueue(self, n: int) -> None:
        assert self.client is not None
        self.client.enqueue({"queue_name": QUEUE, "workflow_name": "noop",
                             "workflow_id": str(n)}, n)

    def work(self, workers: int) -> None:
        DBOS(config={"name": "evq-bench", "system_database_url": URL,
                     "executor_id": f"evq-bench-{os.getpid()}"})
        DBOS.launch()
        DBOS.register_queue(QUEUE)
        threading.Event().wait()  # until SIGTERM

    def close(self) -> None:
        if self.client is not None:
            self.client.destroy()
        if self.records is not None:
            self.records.close()

    def _query(self, sql: str, kind: str) -> list[tuple]:
        if self.records is None:
            self.records = psycopg.connect(URL, autocommit=True)
        return self.records.execute(sql.format(column=COLUMN[kind], where=WHERE[kind])).fetchall()

    def progress(self, kind: str) -> int:
        return self._query("SELECT count(*) FROM dbos.workflow_status WHERE {where}", kind)[0][0]

    def times(self, kind: str) -> list[tuple[int, float]]:
        rows = self._query("SELECT workflow_uuid::int, {column} / 1000.0 FROM dbos.workflow_status"
                           " WHERE {where}", kind)
        return [(n, float(ts)) for n, ts in rows]


if __name__ == "__main__":
    main(DbosPeer)
