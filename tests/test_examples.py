"""The web application examples (examples/), driven by their frameworks' test clients on a
SQLite file: a request dispatches, a worker (embedded in development, apart in production) runs
the job."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import evq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `examples` is imported from the checkout, as `--app` names it
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/app.db"


def test_fastapi_dispatches_and_its_embedded_worker_runs_the_job(url: str) -> None:
    from fastapi.testclient import TestClient

    from examples.fastapi_app import create_app

    q = evq.connect(url)
    evq.use(q)
    try:
        with TestClient(create_app(url, embedded_worker=True)) as client:
            response = client.post("/images/cat.png/resize", params={"width": 64})
            assert response.status_code == 200
            job_id = response.json()["job_id"]
            assert q.result(job_id, timeout=20) == "cat.png thumbnail at 64px"
            assert client.get(f"/jobs/{job_id}").json() == {"state": "succeeded"}
        assert evq.use(None) is q  # the app's lifespan put the default connection back
    finally:
        q.close()


def test_fastapi_without_an_embedded_worker_only_dispatches(url: str) -> None:
    from fastapi.testclient import TestClient

    from examples.fastapi_app import create_app

    with TestClient(create_app(url, embedded_worker=False)) as client:
        job_id = client.post("/images/cat.png/resize").json()["job_id"]
        assert client.get(f"/jobs/{job_id}").json() == {"state": "pending"}


def test_flask_dispatches_and_an_embedded_worker_runs_the_job(url: str) -> None:
    from examples.flask_app import create_app

    app = create_app(url)
    q = app.extensions["evq"]
    try:
        with q.worker(queues=["emails"]).start():
            response = app.test_client().post("/signup", data={"email": "a@b.c"})
            assert response.status_code == 200
            job_id = response.get_json()["job_id"]
            assert q.result(job_id, timeout=20) == "welcome mail sent to a@b.c"
    finally:
        q.close()


def test_flask_in_production_dispatches_for_a_worker_apart(url: str) -> None:
    from examples.flask_app import create_app

    app = create_app(url)
    client = app.test_client()
    try:
        job_id = client.post("/signup", data={"email": "a@b.c"}).get_json()["job_id"]
        assert client.get(f"/jobs/{job_id}").get_json() == {"state": "pending"}
        worker = evq.connect(url)  # as `evq work --app examples.flask_app` would, elsewhere
        try:
            assert worker.worker(queues=["emails"], stop_when_empty=True).run() == 1
            assert worker.result(job_id, timeout=0) == "welcome mail sent to a@b.c"
        finally:
            worker.close()
        assert client.get(f"/jobs/{job_id}").get_json() == {"state": "succeeded"}
    finally:
        app.extensions["evq"].close()
