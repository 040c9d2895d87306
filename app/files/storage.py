"""Where a file's bytes live, behind one small interface: a folder, or an S3 bucket.

``FILE_STORAGE`` picks the backend: ``file://PATH`` (the default, ``./backchannel-files``:
one server, its data folder) or ``s3://BUCKET?endpoint_url=…&region=…`` (any S3-compatible
store; several instances share it). Both take a finished upload from a staging file on local
disk, so nothing ever holds a whole file in memory, and both read back a byte range in
chunks, which is how downloads and Range requests stream.

S3 goes through boto3 (the ``s3`` extra): signing (SigV4), retries, regional endpoints and
multipart uploads are exactly what a hand-written client gets subtly wrong, and boto3 is the
reference for them. It is synchronous, so each call runs in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.to_thread

try:  # the s3 extra: only a server configured for S3 needs it
    import boto3
    from botocore.config import Config
except ImportError:  # pragma: no cover - the server runs without it until FILE_STORAGE says s3://
    boto3 = None

CHUNK = 256 * 1024


class StorageNotConfigured(ValueError):
    """``FILE_STORAGE`` names no backend this server can use."""


class FileStorage(Protocol):
    def staging_file(self) -> tuple[Any, Path]:
        """An open binary file on local disk (and its path) to write an upload into."""
        ...

    async def save(self, key: str, staged: Path, content_type: str) -> None:
        """Keep the staged file under ``key`` (the staging file is gone afterwards)."""
        ...

    def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start``..``end`` (inclusive) of the file under ``key``, in chunks."""
        ...

    async def delete(self, keys: list[str]) -> None:
        """Remove these files; a key that is already gone is not an error."""
        ...

    async def aclose(self) -> None: ...


class FolderStorage:
    """``file://PATH``: one file per key under a folder (``tmp/`` beside them for staging,
    on the same file system, so keeping an upload is a rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.staging = root / "tmp"
        self.staging.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:  # keys are ours (workspace/file id), but be sure
            raise ValueError("storage key outside the storage folder")
        return path

    def staging_file(self) -> tuple[Any, Path]:
        fd, name = tempfile.mkstemp(dir=self.staging, prefix="upload-")
        return os.fdopen(fd, "wb"), Path(name)

    async def save(self, key: str, staged: Path, content_type: str) -> None:
        target = self._path(key)

        def move() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)

        await anyio.to_thread.run_sync(move)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:  # type: ignore[override]
        path = self._path(key)
        async with await anyio.open_file(path, "rb") as f:
            await f.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = await f.read(min(CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    async def delete(self, keys: list[str]) -> None:
        def remove() -> None:
            for key in keys:
                with contextlib.suppress(FileNotFoundError):
                    self._path(key).unlink()

        await anyio.to_thread.run_sync(remove)

    async def aclose(self) -> None:
        return None


class S3Storage:
    """``s3://BUCKET?endpoint_url=…&region=…``: one object per key in the bucket.

    Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
    a profile, an instance role). Staging happens in a local temporary folder, then the file
    is uploaded (in parts when it is large) and the staging file removed.
    """

    def __init__(self, bucket: str, endpoint_url: str | None, region: str | None, staging: Path) -> None:
        if boto3 is None:
            raise StorageNotConfigured("FILE_STORAGE is s3://… but boto3 is not installed: pip install backchannel[s3]")
        self.bucket = bucket
        self.staging = staging
        self.staging.mkdir(parents=True, exist_ok=True)
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"})
        self._client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )

    def staging_file(self) -> tuple[Any, Path]:
        fd, name = tempfile.mkstemp(dir=self.staging, prefix="upload-")
        return os.fdopen(fd, "wb"), Path(name)

    async def save(self, key: str, staged: Path, content_type: str) -> None:
        def upload() -> None:
            try:
                self._client.upload_file(str(staged), self.bucket, key, ExtraArgs={"ContentType": content_type})
            finally:
                with contextlib.suppress(FileNotFoundError):
                    staged.unlink()

        await anyio.to_thread.run_sync(upload)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:  # type: ignore[override]
        def open_range() -> Any:
            reply = self._client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}")
            return reply["Body"]

        body = await anyio.to_thread.run_sync(open_range)
        try:
            while True:
                chunk = await anyio.to_thread.run_sync(body.read, CHUNK)
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    async def delete(self, keys: list[str]) -> None:
        def remove() -> None:
            for start in range(0, len(keys), 1000):  # DeleteObjects takes 1000 at a time
                batch = [{"Key": k} for k in keys[start : start + 1000]]
                self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

        if keys:
            await anyio.to_thread.run_sync(remove)

    async def aclose(self) -> None:
        self._client.close()


def make_storage(spec: str) -> FileStorage:
    """The backend ``FILE_STORAGE`` names."""
    if spec.startswith("file://"):
        path = spec[len("file://") :]
        if not path:
            raise StorageNotConfigured("FILE_STORAGE file:// needs a path, e.g. file://./backchannel-files")
        return FolderStorage(Path(path))
    if spec.startswith("s3://"):
        parts = urlsplit(spec)
        if not parts.netloc:
            raise StorageNotConfigured("FILE_STORAGE s3:// needs a bucket, e.g. s3://my-bucket?region=eu-west-1")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        staging = Path(query.get("staging") or tempfile.gettempdir()) / "backchannel-uploads"
        return S3Storage(parts.netloc, query.get("endpoint_url"), query.get("region"), staging)
    raise StorageNotConfigured("FILE_STORAGE must be file://PATH or s3://BUCKET?endpoint_url=…&region=…")
