"""A small Django project whose tasks run on evq (tests/test_django.py)."""
