"""The pure pieces: link signing and expiry, byte ranges, names and types read from bytes."""

from __future__ import annotations

import time

import orjson

from app.files.intake import clean_name, sniff
from app.files.links import LINK_SECONDS, FileLinks
from app.files.routes import content_disposition, parse_range
from tests.files.samples import HTML, mp4, pdf, png

SECRET = "test-secret-key-0123456789-abcdefghijklmnop"


def test_links_are_valid_one_to_two_hours_and_stable_within_the_hour() -> None:
    links = FileLinks(SECRET, "https://chat.example.com/")
    now = 1_800_000_000.0
    url, expires = links.url("fil_abc", now=now)
    assert url.startswith("https://chat.example.com/files/fil_abc?expires=")
    assert LINK_SECONDS <= expires - now <= 2 * LINK_SECONDS
    assert links.url("fil_abc", now=now + 10)[0] == url  # the same link within the hour
    sig = url.rsplit("signature=", 1)[1]
    assert links.valid("fil_abc", str(expires), sig, now=now + LINK_SECONDS)
    assert not links.valid("fil_abc", str(expires), sig, now=expires + 1)  # expired
    assert not links.valid("fil_abd", str(expires), sig, now=now)  # another file
    assert not links.valid("fil_abc", str(expires + 3600), sig, now=now)  # a longer expiry
    assert not links.valid("fil_abc", "soon", sig, now=now)
    assert not links.valid("fil_abc", str(expires), None, now=now)
    assert not FileLinks("another-secret", "https://x").valid("fil_abc", str(expires), sig, now=now)
    assert links.valid("fil_abc", *links.url("fil_abc")[0].split("expires=")[1].split("&signature="))
    assert time.time() < links.expiry()


def test_only_file_parts_get_links_and_the_rest_is_untouched() -> None:
    links = FileLinks(SECRET, "https://chat.example.com")
    parts = [
        {"text": {"content": 'not a "file_id"'}},
        {"file": {"file_id": "fil_a", "name": "a.pdf", "content_type": "application/pdf", "size": 3}},
        {"image": {"url": "https://cdn.example.com/x.png", "alt": ""}},
        {"image": {"file_id": "fil_b", "alt": "b.png"}},
    ]
    message = {"id": "msg_1", "message_parts": parts}
    out = links.present_message(message)
    assert out["message_parts"][0] == parts[0] and out["message_parts"][2] == parts[2]
    assert out["message_parts"][1]["file"]["url"].startswith("https://chat.example.com/files/fil_a?")
    assert out["message_parts"][3]["image"]["url"].startswith("https://chat.example.com/files/fil_b?")
    assert "url" not in parts[1]["file"]  # the stored parts are not changed
    plain = {"id": "msg_2", "message_parts": [{"text": {"content": "hi"}}]}
    assert links.present_message(plain) is plain
    fragment = {"id": "msg_3", "message_parts": orjson.Fragment(b'[{"text":{"content":"hi"}}]')}
    assert links.present_message(fragment) is fragment
    event = {"type": "message.created", "data": {"message": message, "conversation": {}}}
    assert links.present_event(event)["data"]["message"]["message_parts"][1]["file"]["url"]


def test_byte_ranges() -> None:
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-", 100) == (90, 99)
    assert parse_range("bytes=90-500", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=-500", 100) == (0, 99)
    assert parse_range("bytes=100-", 100) == "unsatisfiable"
    assert parse_range("bytes=-0", 100) == "unsatisfiable"
    assert parse_range("bytes=9-3", 100) == "unsatisfiable"
    assert parse_range("bytes=0-1,4-5", 100) is None  # several ranges: the whole file
    assert parse_range("items=0-1", 100) is None
    assert parse_range("bytes=-", 100) is None


def test_types_come_from_the_bytes() -> None:
    assert sniff(png()) == "image/png"
    assert sniff(pdf()) == "application/pdf"
    assert sniff(mp4()) == "video/mp4"
    assert sniff(b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\0" * 100) == "audio/mpeg"
    assert sniff(HTML) == "text/plain"
    assert sniff("naïve café\n".encode() * 3000) == "text/plain"  # cut inside a character at 8 KiB
    assert sniff(b"\x00\x01\x02binary") == "application/octet-stream"


def test_names_are_cleaned_for_display_and_headers() -> None:
    assert clean_name("C:\\Users\\ada\\receipt.png") == "receipt.png"
    assert clean_name("../../etc/passwd") == "passwd"
    assert clean_name('a"b\r\nc.txt') == "a_b__c.txt"
    assert clean_name("") == clean_name(None) == clean_name("..") == "file"
    assert len(clean_name("x" * 1000)) == 255
    assert content_disposition("attachment", "Résumé.pdf") == (
        "attachment; filename=\"R_sum_.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9.pdf"
    )
