"""A small Django project for the tests of evq.contrib.django (its settings and tasks)."""
