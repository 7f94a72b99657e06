"""``evq make job NAME``: the module it writes imports, registers and runs; bad input is one
error line, a non-zero exit and nothing written."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

import evq
from evq import testing
from evq.cli.main import app
from evq.cli.make import module_name
from evq.workers import registry


def make(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["make", "job", *args])
    return result.exit_code, result.stdout, result.stderr


def test_the_written_module_imports_registers_and_runs(tmp_path: Path) -> None:
    folder = tmp_path / "app" / "jobs"
    assert make("MadeByMakeJob", "--dir", str(folder)) == (
        0, f"wrote {folder}/made_by_make_job.py\n", "")
    spec = importlib.util.spec_from_file_location("made_by_make_job",
                                                  folder / "made_by_make_job.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        cls = module.MadeByMakeJob
        assert registry.lookup("MadeByMakeJob") is cls and (cls.tries, cls.timeout) == (3, 60)
        q = evq.connect("memory://")
        try:
            job_id = q.dispatch(cls(item_id=1))
            assert q.job(job_id).payload == '{"item_id":1}'
            ran = testing.run(cls(item_id=1), queue=q)
            assert ran.succeeded and ran.attempts == 1
            with pytest.raises(evq.InvalidArguments):  # its field is typed
                q.dispatch(cls(item_id="one"))
        finally:
            q.close()
    finally:
        registry._types.pop("MadeByMakeJob")


def test_an_existing_file_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "send_email.py").write_text("# mine\n")
    code, out, err = make("SendEmail", "--dir", str(tmp_path))
    assert (code, out) == (1, "")
    assert err == f"error: {tmp_path}/send_email.py exists: not overwritten\n"
    assert (tmp_path / "send_email.py").read_text() == "# mine\n"


@pytest.mark.parametrize("name", ["send_email", "sendEmail", "1Job", "Send-Email", "Send Email",
                                  "Ünicode", "Class", "Send.Email"])
def test_a_name_that_is_not_a_camel_case_identifier_is_refused(tmp_path: Path,
                                                                 name: str) -> None:
    code, out, err = make(name, "--dir", str(tmp_path / "jobs"))
    assert (code, out) == (1, "")
    assert err == (f"error: {name!r} is not a job class name: use a Python identifier in "
                   "CamelCase, as ProcessPodcast\n")
    assert not (tmp_path / "jobs").exists()


def test_a_folder_that_cannot_be_made_is_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    code, _, err = make("SendEmail", "--dir", str(tmp_path / "file" / "jobs"))
    assert code == 1 and err.startswith("error: cannot make the folder ") and err.count("\n") == 1


def test_the_module_is_the_snake_case_name() -> None:
    assert [module_name(n) for n in ("ProcessPodcast", "HTTPRequest", "Job2Go", "A")] == [
        "process_podcast", "http_request", "job2_go", "a"]
