"""The web dashboard: ``evq.dashboard.app(queue)`` is an ASGI app (needs ``evq[dashboard]``)."""

from .web import app

__all__ = ["app"]
