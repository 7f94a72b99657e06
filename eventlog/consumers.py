"""The ``consumers`` table: where each durable reader of the log is, and who holds it.

A consumer (``evq.subscribe``, ``evq events --consumer``) reads the log after its saved position
and saves the position of what it has handled; one process at a time holds a name, and a holder
that is silent for longer than its lease counts as gone (another may take the name over). This is
the readers' state, not a projection of the log: replay leaves it alone.
"""

from __future__ import annotations

from .errors import InvalidState
from .sqllog import SqlLog

DDL = """
CREATE TABLE IF NOT EXISTS consumers (
    name       TEXT PRIMARY KEY,
    position   INTEGER NOT NULL,   -- the log position it has handled everything up to
    owner      TEXT,               -- who holds it now (NULL: free)
    seen       REAL NOT NULL,      -- the holder's latest word: a claim, a save or a heartbeat
    lease      REAL NOT NULL,      -- silent for longer than this, the holder counts as gone
    created_at REAL NOT NULL
)
"""


def create(log: SqlLog) -> None:
    log.run_script(DDL)


def claim(log: SqlLog, name: str, owner: str, now: float, lease: float, since: int) -> int:
    """Take ``name`` for ``owner`` (a new consumer starts after ``since``); returns its
    position. A name another live holder has is an :class:`InvalidState`."""
    with log.transaction():
        got = log.execute(f"SELECT position, owner, seen, lease FROM consumers WHERE name = ?"
                          f"{log.row_lock()}", (name,))
        if not got:
            log.execute("INSERT INTO consumers(name, position, owner, seen, lease, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (name, since, owner, now, lease, now))
            return since
        position, holder, seen, held_for = got[0]
        if holder not in (None, owner) and now - seen <= held_for:
            raise InvalidState(f"consumer {name!r} is taken by {holder} (heard from "
                               f"{now - seen:.1f} s ago); stop it, or use another name")
        log.execute("UPDATE consumers SET owner = ?, seen = ?, lease = ? WHERE name = ?",
                    (owner, now, lease, name))
        return int(position)


def save(log: SqlLog, name: str, owner: str, position: int, now: float) -> None:
    """Record that ``owner`` has handled everything up to ``position`` (and is alive); an
    :class:`InvalidState` if it no longer holds ``name``."""
    with log.transaction():
        got = log.execute(f"SELECT owner, position FROM consumers WHERE name = ?"
                          f"{log.row_lock()}", (name,))
        if not got or got[0][0] != owner:
            raise InvalidState(f"consumer {name!r} was taken over by "
                               f"{got[0][0] if got else 'nobody'}: this reader stops")
        log.execute("UPDATE consumers SET position = ?, seen = ? WHERE name = ?",
                    (max(position, got[0][1]), now, name))


def release(log: SqlLog, name: str, owner: str) -> None:
    """Give ``name`` up (if ``owner`` still holds it)."""
    with log.transaction():
        log.execute("UPDATE consumers SET owner = NULL WHERE name = ? AND owner = ?",
                    (name, owner))


def position(log: SqlLog, name: str) -> int | None:
    got = log.read_rows("SELECT position FROM consumers WHERE name = ?", (name,))
    return int(got[0][0]) if got else None
