"""The ``s3://`` store against a real S3 protocol server on loopback (moto in server mode),
and two instances sharing it: a file uploaded through one downloads through the other."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from app.settings import Settings
from app.store.migrate import upgrade
from tests.conftest import LiveServer, free_port, migrated_sqlite, postgres_url
from tests.files.samples import mp4, pdf, png, upload

BUCKET = "backchannel-test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class MotoS3:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log = open(workdir / "moto.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **CREDENTIALS},
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url, timeout=0.5)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("moto did not start") from None
                time.sleep(0.1)
        self.client().create_bucket(Bucket=BUCKET)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client("s3", endpoint_url=self.url)

    def keys(self) -> list[str]:
        return [o["Key"] for o in self.client().list_objects_v2(Bucket=BUCKET).get("Contents", [])]

    def env(self) -> dict[str, str]:
        return {**CREDENTIALS, "BACKCHANNEL_FILE_STORAGE": f"s3://{BUCKET}?endpoint_url={self.url}&region=us-east-1"}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[MotoS3]:
    store = MotoS3(tmp_path)
    try:
        yield store
    finally:
        store.stop()


def test_the_s3_store_keeps_serves_ranges_and_erases(server_factory: Any, s3: MotoS3) -> None:
    server: LiveServer = server_factory(env=s3.env())
    tenant = server.new_tenant()
    with server.client(tenant) as api:
        clip = mp4(300_000)
        body = upload(api, clip, "howto.mp4").json()
        assert s3.keys() == [f"{tenant.workspace_id}/{body['id']}"]
        got = httpx.get(body["url"])
        assert got.status_code == 200 and got.content == clip
        part = httpx.get(body["url"], headers={"Range": "bytes=100000-100099"})
        assert part.status_code == 206 and part.content == clip[100000:100100]
        assert part.headers["content-range"] == f"bytes 100000-100099/{len(clip)}"
        assert not list((server.workdir / "files").glob("*")), "nothing kept on the local disk"


def _shared_database(tmp_path: Path) -> str:
    base = postgres_url()
    if not base:
        return migrated_sqlite(tmp_path)
    import psycopg

    name = f"bc_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{base.rpartition('/')[0]}/{name}"
    upgrade(Settings(database_url=url, env="test"))
    return url


def test_a_file_uploaded_through_one_instance_downloads_through_another(
    server_factory: Any, s3: MotoS3, tmp_path: Path
) -> None:
    """Two real servers sharing the S3 store and a database (PostgreSQL when the test URL is
    set, otherwise one SQLite file)."""
    database_url = _shared_database(tmp_path)
    one: LiveServer = server_factory(env=s3.env(), database_url=database_url)
    two: LiveServer = server_factory(env=s3.env(), database_url=database_url)
    tenant = one.new_tenant()
    with one.client(tenant) as api_one, two.client(tenant) as api_two:
        body = upload(api_one, pdf(), "statement.pdf").json()
        photo = upload(api_two, png(), "receipt.png").json()
        # the link one signed opens on two (same secret key, shared store), and the reverse
        other_host = body["url"].replace(one.url, two.url)
        assert httpx.get(other_host).content == pdf()
        assert httpx.get(photo["url"].replace(two.url, one.url)).content == png()
        # and the API of the other instance reads it with a fresh link to itself
        again = api_two.get(f"/api/v1/files/{body['id']}").json()
        assert again["url"].startswith(two.url) and httpx.get(again["url"]).content == pdf()
        conv = api_one.post("/api/v1/conversations", json={"user_id": api_one.post("/api/v1/users", json={}).json()["id"]}).json()
        r = api_two.post(f"/api/v1/conversations/{conv['id']}/messages", json={"message_parts": [{"file": {"file_id": body["id"]}}]})
        assert r.status_code == 201, r.text
        listed = api_one.get(f"/api/v1/conversations/{conv['id']}/messages").json()["data"]
        assert httpx.get(listed[0]["message_parts"][0]["file"]["url"]).content == pdf()
