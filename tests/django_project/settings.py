"""Settings of the test project: tasks on evq at ``EVQ_URL`` (tests override ``TASKS``)."""

import importlib.util
import os

SECRET_KEY = "evq-tests-only"
USE_TZ = True
INSTALLED_APPS = [*(["django_tasks"] if importlib.util.find_spec("django_tasks") else []),
                  "tests.django_project"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
TASKS = {"default": {"BACKEND": "evq.contrib.django.EvqBackend", "QUEUES": ["default", "high"],
                     "OPTIONS": {"url": os.environ.get("EVQ_URL", "memory://")}}}
