"""What importing a part of evq loads: a process that only decodes events (a process-pool child,
a consumer of the log) loads no store, worker or health code."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(statement: str) -> set[str]:
    names = "' '.join(m for m in sys.modules if m.startswith('evq'))"
    code = f"import sys; {statement}; print({names})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_the_event_types_loads_no_store_worker_or_api() -> None:
    loaded = loaded_after("import evq.eventlog.events")
    assert loaded <= {"evq", "evq.eventlog", "evq.eventlog.errors", "evq.eventlog.events"}


def test_the_package_loads_the_api_on_first_use() -> None:
    assert "evq.api" not in loaded_after("import evq")
    assert not {"evq.sync", "evq.testing"} & loaded_after("import evq")
    assert "evq.api" in loaded_after("import evq; evq.connect")
    assert "evq.workers.worker" not in loaded_after("import evq; evq.Job; evq.connect")
