"""procrastinate's runner (see peer_runner.py for the commands), run with its venv's Python.

procrastinate with its defaults on PostgreSQL (127.0.0.1:5432; a database of its own,
``evq_bench_procrastinate``, made afresh before each run, its schema applied with
``app.schema_manager.apply_schema()``): ``App(connector=PsycopgConnector(conninfo=...))``, the
task ``@app.task(name="noop")``, ``noop.defer(n=...)`` one at a time, ``noop.batch_defer(...)``
in bulk, and per worker process ``app.run_worker()`` (concurrency 1, LISTEN/NOTIFY on, its
defaults). Start and completion come from procrastinate's own records: the ``started`` and
``succeeded`` rows of ``procrastinate_events`` (their ``at``, the database's clock).
"""

from __future__ import annotations

from peer_runner import Peer, fresh_database, main
from procrastinate import App, PsycopgConnector

DATABASE = "evq_bench_procrastinate"
URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"

app = App(connector=PsycopgConnector(conninfo=URL))


@app.task(name="noop")
def noop(n: int) -> None:
    pass


EVENT = {"start": "started", "end": "succeeded"}


class Procrastinate(Peer):
    name = "procrastinate"
    bulk = True
    opened = False

    def reset(self) -> None:
        fresh_database(DATABASE)
        self.open()
        app.schema_manager.apply_schema()

    def open(self) -> None:
        if not self.opened:
            app.open()
            self.opened = True

    def enqueue(self, n: int) -> None:
        noop.defer(n=n)

    def enqueue_many(self, ns: list[int]) -> None:
        noop.batch_defer(*({"n": n} for n in ns))

    def work(self, workers: int) -> None:
        app.run_worker()

    def close(self) -> None:
        if self.opened:
            app.close()

    def _query(self, sql: str, kind: str) -> list[tuple]:
        self.open()
        with app.connector.get_sync_connector().pool.connection() as conn:  # type: ignore
            return conn.execute(sql, (EVENT[kind],)).fetchall()

    def progress(self, kind: str) -> int:
        return self._query("SELECT count(*) FROM procrastinate_events WHERE type = %s", kind)[0][0]

    def times(self, kind: str) -> list[tuple[int, float]]:
        rows = self._query("SELECT (j.args->>'n')::int, extract(epoch FROM e.at)::float8 "
                           "FROM procrastinate_events e JOIN procrastinate_jobs j "
                           "ON j.id = e.job_id WHERE e.type = %s", kind)
        return [(n, ts) for n, ts in rows]


if __name__ == "__main__":
    main(Procrastinate)
