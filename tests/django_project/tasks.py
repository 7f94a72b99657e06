"""The project's tasks: Django's ``@task`` functions that evq runs."""

from django_tasks import task


@task()
def add(a: int, b: int) -> int:
    return a + b


@task(priority=50, queue_name="reports")
def report(month: str) -> dict[str, str]:
    return {"month": month, "status": "done"}


@task()
async def greet(name: str) -> str:
    return f"hello {name}"


@task()
def fail(message: str) -> None:
    raise ValueError(message)


@task(takes_context=True)
def attempt(context: object, note: str) -> list[object]:
    return [context.attempt, context.task_result.id, note]  # type: ignore[attr-defined]
