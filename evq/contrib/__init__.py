"""Integrations of evq with other libraries (each imports its library only when imported)."""
