"""Dispatching evq jobs from a Flask app.

Development: one process, the app with a worker embedded in it (stopped with the app)::

    python -m examples.flask_app

Production: the app only dispatches; workers run apart, as many as needed, on the same store::

    EVQ_URL=postgresql://app@db/app gunicorn 'examples.flask_app:create_app()'
    EVQ_URL=postgresql://app@db/app evq work --app examples.flask_app --queues emails
"""

from __future__ import annotations

from flask import Flask, request

import evq


class SendWelcome(evq.Job):
    queue = "emails"
    tries = 3
    backoff = "exponential"

    email: str

    def handle(self) -> str:
        return f"welcome mail sent to {self.email}"  # the slow work, off the request


def create_app(url: str | None = None) -> Flask:
    """The app, on the store ``url`` (default ``EVQ_URL``, else ``sqlite:///evq.db``)."""
    queue = evq.connect(url)
    app = Flask(__name__)
    app.extensions["evq"] = queue

    @app.post("/signup")
    def signup() -> dict[str, int]:
        email = request.form["email"]  # ... create the account, then:
        return {"job_id": queue.dispatch(SendWelcome(email=email))}

    @app.get("/jobs/<int:job_id>")
    def job(job_id: int) -> dict[str, str]:
        return {"state": queue.job(job_id).state}

    return app


if __name__ == "__main__":
    app = create_app()
    with app.extensions["evq"].worker(queues=["emails"]).start():  # stops when the app does
        app.run(debug=True, use_reloader=False)  # the reloader would start a second worker
