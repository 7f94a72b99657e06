"""The ``--app`` of a worker for Django tasks: ``DJANGO_SETTINGS_MODULE=mysite.settings
evq work --app evq.contrib.django.worker`` sets Django up and imports every installed app's
``tasks`` module."""

from evq.contrib.django.job import setup

setup()
