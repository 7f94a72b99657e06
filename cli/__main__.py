"""``python -m evq.cli``: the ``evq`` command (how a supervisor starts its worker processes)."""

from .main import main

if __name__ == "__main__":  # not when a spawned child process imports it
    main()
