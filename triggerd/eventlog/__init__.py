"""The event log: one schema for every trigger, signal, state change and log line, and
where it is kept.

- :mod:`triggerd.eventlog.schema`: :class:`LogEvent`, ids, times, levels;
- :mod:`triggerd.eventlog.safe`: events made storable (never raises);
- :mod:`triggerd.eventlog.summary`: per-run summaries kept up to date by inserts;
- :mod:`triggerd.eventlog.store`: the backend-neutral :class:`EventStore`;
- :mod:`triggerd.eventlog.factory`: :func:`open_event_store`, the backend a target names;
- :mod:`triggerd.eventlog.sqlite` (embedded default) and :mod:`triggerd.eventlog.mongodb`
  (imported on demand: it loads pymongo).

Importing this package loads nothing but the schema, so producers (workers) stay light.
"""

from triggerd.eventlog.schema import SCHEMA_VERSION, LogEvent, new_id

__all__ = ["SCHEMA_VERSION", "LogEvent", "new_id"]
