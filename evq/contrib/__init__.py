"""Optional integrations, each behind an extra (``pip install 'evq[otel]'``)."""
