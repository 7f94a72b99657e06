"""The web dashboard through Starlette's test client: every page, filter and action, allowed
and refused, on each store."""

from __future__ import annotations

import getpass
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

import evq
from evq.dashboard import app, graph

TOKEN = "s3cret-token"
SCRIPT = "<script>alert(1)</script>"


class Xss(evq.Job):
    job_name = "dashboard.xss"
    tries = 1

    note: str = ""

    def handle(self) -> None:
        raise ValueError(SCRIPT)


class Fine(evq.Job):
    job_name = "dashboard.fine"

    note: str = ""

    def handle(self) -> str:
        return self.note


class Broken(evq.Job):
    job_name = "dashboard.broken"
    tries = 1

    full: bool = False

    def handle(self) -> None:
        raise OSError("disk full" if self.full else "network down")


class Scripted(evq.Job):
    job_name = SCRIPT

    def handle(self) -> None:
        pass


@pytest.fixture
def failed_id(queue: evq.Queue) -> int:
    """One failed job (its error message is a script tag) and one that succeeded."""
    job_id = queue.dispatch(Xss(note="needle-42"))
    queue.dispatch(Fine(note="hay"))
    queue.worker(stop_when_empty=True).run()
    assert queue.job(job_id).state == "failed"
    return job_id


@pytest.fixture
def failures(queue: evq.Queue) -> dict[str, list[int]]:
    """Failed jobs of two types, the ``dashboard.broken`` ones with two errors, by kind."""
    ids = {"xss": [queue.dispatch(Xss())],
           "full": queue.dispatch_many([Broken(full=True), Broken(full=True)]),
           "down": [queue.dispatch(Broken())]}
    queue.worker(stop_when_empty=True).run()
    assert queue.count_jobs("failed") == 4
    return ids


@pytest.fixture
def client(queue: evq.Queue) -> Iterator[TestClient]:
    with TestClient(app(queue)) as c:
        yield c


@pytest.fixture
def actions(queue: evq.Queue) -> Iterator[TestClient]:
    with TestClient(app(queue, allow_actions=True, token=TOKEN)) as c:
        yield c


def test_overview_shows_counts_chart_types_and_workers(client: TestClient, failed_id: int,
                                                       queue: evq.Queue) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert '<td class="failed">1</td>' in page.text
    assert '<td class="succeeded">1</td>' in page.text
    assert "<svg" in page.text and "2 attempts" in page.text
    assert "dashboard.xss" in page.text and "dashboard.fine" in page.text
    assert client.get("/live/counts").text.count('<td class="failed">1</td>') == 1


def test_error_messages_and_arguments_render_as_text(client: TestClient,
                                                     failed_id: int) -> None:
    for url in (f"/jobs/{failed_id}", "/failed", "/jobs?state=failed"):
        body = client.get(url).text
        assert SCRIPT not in body, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body, url


def test_jobs_filters_by_state_name_queue_text_and_time(client: TestClient, failed_id: int,
                                                        queue: evq.Queue) -> None:
    def ids(**params: str) -> set[int]:
        page = client.get("/jobs", params=params)
        assert page.status_code == 200
        return {r.id for r in queue.search(limit=100) if f'href="/jobs/{r.id}"' in page.text}

    everything = ids()
    assert len(everything) == 2
    assert ids(state="failed") == {failed_id}
    assert ids(name="dashboard.fine") == everything - {failed_id}
    assert ids(text="needle-42") == {failed_id}
    assert ids(text="alert(1)") == {failed_id}  # in the error
    assert ids(text="100%_") == set()  # LIKE wildcards are literal
    assert ids(queue="nowhere") == set()
    assert ids(since="2999-01-01T00:00:00") == set()
    assert ids(until="2999-01-01T00:00:00") == everything
    assert client.get("/jobs", params={"state": "bogus"}).status_code == 400
    assert client.get("/jobs", params={"since": "yesterday"}).status_code == 400


def test_jobs_are_paged(client: TestClient, queue: evq.Queue) -> None:
    queue.dispatch_many([Fine(note=str(i)) for i in range(55)])
    first = client.get("/jobs").text
    assert "older" in first and "newer" not in first
    second = client.get("/jobs", params={"page": "1"}).text
    assert second.count('<tr><td><a href="/jobs/') == 5 and "newer" in second


def test_job_page_is_a_timeline_with_the_traceback(client: TestClient, failed_id: int) -> None:
    page = client.get(f"/jobs/{failed_id}").text
    order = [page.index(t) for t in ("JobDispatched", "JobLeased", "JobStarted", "JobFailed")]
    assert order == sorted(order)
    assert "Traceback" in page and "ValueError" in page
    assert client.get("/jobs/999999").status_code == 404


def test_groups_pages(client: TestClient, queue: evq.Queue) -> None:
    batch = queue.batch([Fine(note="a"), Fine(note="b")], name="nightly").dispatch()
    listing = client.get("/groups").text
    assert "nightly" in listing
    gid = next(g["id"] for g in queue.groups())
    assert "nightly" in client.get(f"/groups/{gid}").text
    assert client.get("/groups/999999").status_code == 404
    assert batch is not None


def test_graph_layers_a_diamond_and_draws_each_edge() -> None:
    nodes = [graph.Node(i, name, "pending") for i, name in ((4, "d"), (1, "a"), (2, "b"), (3, "c"))]
    edges = [(1, 2), (1, 3), (2, 4), (3, 4)]
    assert graph.layers(nodes, edges) == {1: 0, 2: 1, 3: 1, 4: 2}
    assert graph.layers(nodes, [(1, 4), *edges]) == {1: 0, 2: 1, 3: 1, 4: 2}  # the longest path
    drawn = graph.svg(nodes, edges, soft={(3, 4)})
    assert drawn.startswith("<svg") and drawn.count('class="edge') == 4
    assert drawn.count('class="edge soft"') == 1
    assert all(f'<a href="/jobs/{i}" class="node pending">' in drawn for i in (1, 2, 3, 4))
    b, c = drawn.index('href="/jobs/2"'), drawn.index('href="/jobs/3"')
    assert 'x="248"' in drawn[b:drawn.index("</a>", b)]  # layer 1, above c (by id)
    assert 'y="8"' in drawn[b:drawn.index("</a>", b)] and 'y="60"' in drawn[c:]


def test_graph_is_left_out_for_a_batch_and_a_huge_workflow() -> None:
    assert graph.of_group({"kind": "batch"}) is None
    jobs = [{"id": i, "name": "x", "state": "pending", "after": [i - 1] if i else [],
             "ignore_failure": []} for i in range(graph.MAX_NODES + 1)]
    assert graph.of_group({"jobs": jobs}) is None
    assert graph.of_group({"jobs": jobs[:-1]}) is not None


def test_group_page_draws_a_workflow(client: TestClient, queue: evq.Queue) -> None:
    wf = queue.workflow(name="diamond")
    a = wf.add(Fine(note="a"))
    b, c = wf.add(Xss(), after=[a]), wf.add(Fine(note="c"), after=[a])
    wf.add(Fine(note="d"), after=[b, c])
    wf.dispatch()
    queue.worker(stop_when_empty=True).run()
    assert wf.id is not None
    page = client.get(f"/groups/{wf.id}").text
    drawing = page[page.index("<svg"):page.index("</svg>")]
    for i in wf.job_ids:
        assert f'<a href="/jobs/{i}" class="node ' in drawing
    for state in ("succeeded", "failed", "cancelled"):
        assert f'class="node {state}"' in drawing
    assert drawing.count('class="edge"') == 4
    assert "<h2>Jobs</h2>" in page[page.index("</svg>"):]  # the list stays, under the graph


def test_group_page_draws_a_chain_and_escapes_job_names(client: TestClient,
                                                       queue: evq.Queue) -> None:
    chain = queue.chain(Fine(note="1"), Scripted(), Fine(note="3")).dispatch()
    assert chain.id is not None
    page = client.get(f"/groups/{chain.id}").text
    drawing = page[page.index("<svg"):page.index("</svg>")]
    assert [f'href="/jobs/{i}"' in drawing for i in chain.job_ids] == [True] * 3
    assert 'class="node pending"' in drawing and 'class="node waiting"' in drawing
    assert drawing.count('class="edge"') == 2
    assert SCRIPT not in page and "&lt;script&gt;alert(1)" in drawing


def test_schedules_page_shows_each_schedule_s_last_tick(client: TestClient,
                                                      queue: evq.Queue) -> None:
    from evq.eventlog.events import ScheduleTicked

    assert "nightly" not in client.get("/schedules").text
    now = time.time()
    tick = float(int(now // 60) * 60)
    job_id = queue.store.tick(ScheduleTicked(ts=now, schedule="<b>nightly</b>", tick=tick),
                              queue._dispatched(Fine(note="x"), now, None, None, None, None))
    page = client.get("/schedules").text
    assert "&lt;b&gt;nightly&lt;/b&gt;" in page and f'href="/jobs/{job_id}"' in page
    assert "pending" in page and "not declared here" in page  # no cron known for it


def test_schedules_page_shows_the_next_runs_of_declared_schedules(client: TestClient) -> None:
    import tests.sched_jobs  # declares sched-cleanup: 0 8 * * * in Europe/Paris
    from evq.schedules import registered
    from evq.workers.cron import after

    [declared] = [s for s in registered() if s.name == "sched-cleanup"]
    page = client.get("/schedules").text
    row = page[page.index("<td>sched-cleanup</td>"):]
    row = row[:row.index("</tr>")]
    assert "<code>0 8 * * *</code> Europe/Paris" in row
    runs = after(declared.cron, time.time(), 3)
    assert all(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) in row for t in runs)
    assert tests.sched_jobs


def test_metrics_in_prometheus_text(client: TestClient, failed_id: int) -> None:
    page = client.get("/metrics")
    assert page.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = page.text.splitlines()
    assert 'evq_jobs{queue="default",state="failed"} 1' in lines
    assert 'evq_attempts_total{name="dashboard.fine",outcome="succeeded"} 1' in lines
    assert "# TYPE evq_job_run_seconds summary" in lines
    assert "evq_workers_alive 0" in lines


def test_actions_are_refused_without_allow_actions(client: TestClient, failed_id: int,
                                                   queue: evq.Queue) -> None:
    form = {"job_id": str(failed_id), "by": "ann", "token": TOKEN}
    assert client.post("/actions/retry", data=form).status_code == 403
    assert "Retry" not in client.get(f"/jobs/{failed_id}").text
    assert queue.job(failed_id).state == "failed"


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x"])
def test_actions_are_refused_without_the_token(actions: TestClient, failed_id: int,
                                               queue: evq.Queue, token: str | None) -> None:
    form = {"job_id": str(failed_id), "by": "mallory"}
    if token is not None:
        form["token"] = token
    assert actions.post("/actions/retry", data=form).status_code == 403
    assert queue.job(failed_id).state == "failed"


def test_actions_are_post_only(actions: TestClient, failed_id: int) -> None:
    """A link or an image on another site cannot act: GET is not an action."""
    assert actions.get(f"/actions/retry?job_id={failed_id}&token={TOKEN}&by=x").status_code \
        == 405


def test_retry_names_the_operator_and_reason(actions: TestClient, failed_id: int,
                                             queue: evq.Queue) -> None:
    assert "Retry" in actions.get(f"/jobs/{failed_id}").text
    form = {"job_id": str(failed_id), "by": "ann", "reason": "fixed", "token": TOKEN}
    done = actions.post("/actions/retry", data=form, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/jobs/{failed_id}"
    requeued = queue.history(failed_id)[-1].event
    assert type(requeued).__name__ == "JobRequeued"
    assert (requeued.by, requeued.reason) == ("ann", "fixed")  # type: ignore[union-attr]
    assert "by ann" in actions.get(f"/jobs/{failed_id}").text


def test_token_in_a_header_and_an_operator_is_required(actions: TestClient, failed_id: int,
                                                       queue: evq.Queue) -> None:
    form = {"job_id": str(failed_id)}
    assert actions.post("/actions/delete", data=form,
                        headers={"x-evq-token": TOKEN}).status_code == 400
    form["by"] = "bob"
    done = actions.post("/actions/delete", data=form, headers={"x-evq-token": TOKEN},
                        follow_redirects=False)
    assert done.status_code == 303
    assert queue.count_jobs("failed") == 0


def test_retry_all_and_cancel(actions: TestClient, failed_id: int, queue: evq.Queue) -> None:
    form = {"by": "ann", "token": TOKEN, "queue": "default"}
    assert actions.post("/actions/retry-all", data=form).status_code == 200
    assert queue.job(failed_id).state == "pending"
    cancelled = actions.post("/actions/cancel", data={**form, "job_id": str(failed_id),
                                                      "reason": "no longer needed"})
    assert cancelled.status_code == 200
    event = queue.history(failed_id)[-1].event
    assert (event.by, event.reason) == ("ann", "no longer needed")  # type: ignore[union-attr]
    assert actions.post("/actions/cancel", data={**form, "job_id": str(failed_id)}
                        ).status_code == 409
    assert actions.post("/actions/explode", data={**form, "job_id": "1"}).status_code == 404


def _retry_all(actions: TestClient, q: evq.Queue, failures: dict[str, list[int]],
               retried: set[str], **filters: str) -> None:
    """Retry all failed jobs matching ``filters`` as the failed page's form would; only the
    jobs of the kinds ``retried`` are requeued, each by the operator."""
    page = actions.get("/failed", params=filters).text
    for field, value in filters.items():  # the form carries the filter (none: no form)
        assert (f'<input type="hidden" name="{field}" value="{value}">' in page) == bool(retried)
    shown = {i for ids in failures.values() for i in ids if f'href="/jobs/{i}"' in page}
    assert shown == {i for kind in retried for i in failures[kind]}
    done = actions.post("/actions/retry-all", follow_redirects=False,
                        data={**filters, "by": "ann", "reason": "fixed", "token": TOKEN})
    assert done.status_code == 303
    assert done.headers["location"].startswith("/failed?")
    assert f"retried={len(shown)}" in done.headers["location"]
    for kind, ids in failures.items():
        for i in ids:
            assert q.job(i).state == ("pending" if kind in retried else "failed"), kind
            if kind in retried:
                event = q.history(i)[-1].event
                assert type(event).__name__ == "JobRequeued"
                assert (event.by, event.reason) == ("ann", "fixed")  # type: ignore[union-attr]


def test_retry_all_of_one_job_type(actions: TestClient, queue: evq.Queue,
                                   failures: dict[str, list[int]]) -> None:
    _retry_all(actions, queue, failures, {"full", "down"}, name="dashboard.broken")


def test_retry_all_with_a_text_in_the_error(actions: TestClient, queue: evq.Queue,
                                            failures: dict[str, list[int]]) -> None:
    _retry_all(actions, queue, failures, {"full"}, text="disk full")


def test_retry_all_of_a_type_a_text_and_a_queue(actions: TestClient, queue: evq.Queue,
                                                failures: dict[str, list[int]]) -> None:
    _retry_all(actions, queue, failures, set(), name="dashboard.xss", text="disk")
    _retry_all(actions, queue, failures, {"down"}, queue="default", name="dashboard.broken",
               text="network")


def test_retry_all_is_refused_without_the_token(actions: TestClient, queue: evq.Queue,
                                                failures: dict[str, list[int]]) -> None:
    form = {"name": "dashboard.broken", "by": "mallory"}
    assert actions.post("/actions/retry-all", data=form).status_code == 403
    assert actions.post("/actions/retry-all", data={**form, "token": "wrong"}).status_code == 403
    assert queue.count_jobs("failed") == 4


def test_retry_all_filters_in_the_api(queue: evq.Queue, failures: dict[str, list[int]]) -> None:
    assert queue.retry_all(name="dashboard.broken", text="nothing like it") == 0
    assert queue.retry_all("elsewhere") == 0
    assert queue.retry_all(text="disk full", by="ann") == 2
    assert queue.retry_all(name="dashboard.xss") == 1
    assert queue.retry_all() == 1
    assert queue.count_jobs("failed") == 0


def test_app_refuses_actions_without_a_token(queue: evq.Queue) -> None:
    with pytest.raises(ValueError):
        app(queue, allow_actions=True)


def test_live_stream_reports_a_change(client: TestClient, queue: evq.Queue) -> None:
    with client.stream("GET", "/live") as stream:
        lines = stream.iter_lines()
        assert next(lines) == "retry: 1000"
        queue.dispatch(Fine(note="live"))
        assert next(line for line in lines if line.startswith("event:")) == "event: change"


def test_cli_failed_retry_records_the_os_user(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/evq.db"
    q = evq.connect(url)
    job_id = q.dispatch(Xss())
    q.worker(stop_when_empty=True).run()
    run = subprocess.run([sys.executable, "-m", "evq.cli", "--url", url, "failed", "retry",
                          str(job_id), "--by", "carol", "--reason", "deploy fixed it"],
                         capture_output=True, text=True, check=True)
    assert "requeued" in run.stdout
    history = subprocess.run([sys.executable, "-m", "evq.cli", "--url", url, "history",
                              str(job_id)], capture_output=True, text=True, check=True).stdout
    assert "carol" in history and "deploy fixed it" in history
    q.close()


def test_replay_shows_the_queues_as_of_a_past_moment(client: TestClient, failed_id: int,
                                                     queue: evq.Queue) -> None:
    before = client.get("/replay", params={"at": "2000-01-01T00:00:00"}).text
    assert "no jobs then" in before
    after = client.get("/replay", params={"at": "2999-01-01T00:00:00"}).text
    assert '<td class="failed">1</td>' in after and '<td class="succeeded">1</td>' in after
    assert client.get("/replay").status_code == 200
    assert queue.count_jobs("failed") == 1  # the live projections are untouched


def test_cli_clear_records_the_os_user_by_default(tmp_path: object) -> None:
    url = f"sqlite:///{tmp_path}/evq.db"
    q = evq.connect(url)
    job_id = q.dispatch(Fine())
    subprocess.run([sys.executable, "-m", "evq.cli", "--url", url, "clear", "default", "--force"],
                   capture_output=True, text=True, check=True)
    event = q.history(job_id)[-1].event
    assert type(event).__name__ == "QueueCleared"
    assert event.by == getpass.getuser()  # type: ignore[union-attr]
    q.close()
