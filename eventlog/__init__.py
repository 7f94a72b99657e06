"""The event log: event types (:mod:`.events`), their encoding (:mod:`.codec`), errors
(:mod:`.errors`), and the stores that append and read them. Import the submodule you need: this
package imports nothing itself, so a process that only decodes events loads no store."""
