"""Benchmarks of evq's SQLite store beside huey, rq, dramatiq, celery, procrastinate, arq, saq,
taskiq and pgqueuer (each in its own venv) and plain sqlite3.

Run ``python -m benchmarks`` (or ``--quick``) from the repository root; see README.md.
"""
