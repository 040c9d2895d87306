"""Backchannel, a self-hostable conversation backend: ``app.main.create_app`` is the server.

Package ``__init__`` files import nothing (tests/test_imports.py): importing one module never
drags in its siblings.
"""

VERSION = "0.1.0"  # the OpenAPI document's and /metrics' version (pyproject.toml has the package's)
