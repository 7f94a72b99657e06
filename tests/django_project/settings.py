"""Settings of the test project: its tasks go to the evq store that ``EVQ_URL`` names, and its
database is the SQLite file ``EVQ_DJANGO_DB`` (both set by the tests)."""

import os

SECRET_KEY = "evq-tests"
USE_TZ = True
INSTALLED_APPS = ["django_tasks", "tests.django_project"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("EVQ_DJANGO_DB", ":memory:")}}
TASKS = {"default": {"BACKEND": "evq.contrib.django.EvqBackend",
                     "QUEUES": ["default", "reports"],
                     "OPTIONS": {"url": os.environ.get("EVQ_URL", "memory://")}}}
