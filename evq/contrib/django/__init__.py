"""A backend for Django's tasks framework (``django.tasks`` in Django 6, the ``django-tasks``
backport before): ``@task`` functions are enqueued into evq and run by ``evq work``.

    TASKS = {"default": {"BACKEND": "evq.contrib.django.EvqBackend",
                         "OPTIONS": {"url": "sqlite:///evq.db"}}}

Workers: ``DJANGO_SETTINGS_MODULE=mysite.settings evq work --app evq.contrib.django.worker``.
"""

from evq.contrib.django.backend import EvqBackend
from evq.contrib.django.job import DjangoTask, setup

__all__ = ["DjangoTask", "EvqBackend", "setup"]
