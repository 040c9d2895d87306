"""The store: where everything Backchannel keeps is written and read, on SQLite or PostgreSQL.

- ``tables.py``: the SQLModel tables, the one description of the schema.
- ``dialect.py``: every difference between SQLite and PostgreSQL, asked of one ``Dialect``.
- ``engine.py``: engines and sessions (nothing connects at import).
- ``sql.py``: the hot paths' prepared statements, built once from the tables.
- ``runner.py``: ``Tx`` and the ``Runner``: group-committed writes, batched reads, and the
  events each write announces once it has committed.
- ``search.py``: the full-text index (``search_entry``; SQLite FTS5, PostgreSQL GIN): how entries
  are written, queried and deleted (erasure calls ``forget_user`` and ``purge``).
- ``migrate.py`` and ``migrations/``: Alembic, applied under a lock.
"""
