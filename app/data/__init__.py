"""The data a business keeps about the people who chat, and what it owes them (SPEC §13).

- ``erasure.py``: deleting a user, or conversations, with everything that carries their data,
  in one transaction; then their files' bytes and the database's own copies.
- ``export.py``: everything stored about a user, as one document.
- ``retention.py``: the workspace's ``retention_days`` and the background job that erases
  resolved conversations past it, in small batches.
- ``audit.py``: the append-only record of admin actions, written in the action's transaction.
"""
