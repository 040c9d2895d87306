"""Files and attachments (SPEC §10).

- ``storage.py``: where a file's bytes live: a folder (``file://``) or an S3 bucket (``s3://``).
- ``intake.py``: reading an upload: streamed ``multipart/form-data``, type read from the bytes.
- ``records.py``: file rows: create, read, attach to a message, erase.
- ``links.py``: signed, expiring download links, and the message parts that carry them.
- ``service.py``: the running server's files (store, signer, the steps of an upload).
- ``routes.py``: signed downloads and the widget's upload, outside ``/api``.
"""
