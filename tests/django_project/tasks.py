"""Django tasks of the test project: sync, async, failing, with context."""

import asyncio

try:
    from django.tasks import task  # type: ignore[import-not-found]
except ImportError:
    from django_tasks import task


class TaskBroke(Exception):
    """What ``broken`` raises."""


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="high", priority=50)
async def async_add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task
def broken(message: str) -> None:
    raise TaskBroke(message)


@task(takes_context=True)
def attempts(context: object, label: str) -> str:
    return f"{label}:{context.attempt}"  # type: ignore[attr-defined]
