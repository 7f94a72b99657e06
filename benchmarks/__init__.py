"""Benchmarks of evq's SQLite store beside huey (``SqliteHuey``) and plain sqlite3.

Run ``python -m benchmarks`` (or ``--quick``) from the repository root; see README.md.
"""
