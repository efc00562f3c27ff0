"""The service database: engine, ORM models, migrations and the job queue.

SQLite is the embedded default (WAL, busy timeout, foreign keys, ``BEGIN IMMEDIATE`` for
writers); PostgreSQL is the shared database when several hosts run workers. The claim
function in :mod:`service.db.queue` is the only place that knows which one it is on.
"""
