"""Projections: the state transitions of every event (:mod:`.apply`) and the tables derived from
the log (:mod:`.store`). Import the submodule you need: this package imports nothing itself."""
