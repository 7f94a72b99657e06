"""What ``evq work --app evq.contrib.django.worker`` imports: Django, set up with the settings of
``DJANGO_SETTINGS_MODULE``, so that the tasks it runs find their apps, models and database."""

import os

import django

from evq.eventlog.errors import ConfigError

if not os.environ.get("DJANGO_SETTINGS_MODULE"):
    raise ConfigError("evq.contrib.django.worker needs DJANGO_SETTINGS_MODULE (the settings "
                      "module of the Django project whose tasks it runs)")
django.setup()

from . import DjangoTask  # noqa: E402,F401 (registers the job type of Django tasks)
