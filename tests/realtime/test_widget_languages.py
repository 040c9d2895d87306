"""The widget's languages (SPEC §12): one catalogue per language, served beside widget.js,
each with exactly English's strings; and the workspace's settings that the widget reads."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from app.api.schemas import WIDGET_LOCALES
from app.assets import STATIC_DIR
from tests.conftest import InProcessServer, Tenant

PLACEHOLDER = re.compile(r"\{(\w+)\}")


def english() -> dict[str, str]:
    """The English catalogue as widget.js carries it (between its /*EN*/ markers)."""
    source = (STATIC_DIR / "widget.js").read_text()
    return json.loads(source.split("/*EN*/")[1])  # type: ignore[no-any-return]


def catalogue(code: str) -> dict[str, str]:
    return json.loads((STATIC_DIR / f"widget-locale-{code}.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("code", [c for c in WIDGET_LOCALES if c != "en"])
def test_every_language_has_every_english_string_and_no_other(code: str) -> None:
    en, other = english(), catalogue(code)
    assert set(other) == set(en), {"missing": set(en) - set(other), "extra": set(other) - set(en)}
    for key, text in other.items():
        assert text.strip(), f"{code}.{key} is empty"
        # A translation may leave a placeholder out ("one unread message") but never invent one.
        assert set(PLACEHOLDER.findall(text)) <= set(PLACEHOLDER.findall(en[key])), f"{code}.{key}: {text!r}"


def test_english_strings_name_the_controls_as_spec_section_7_does() -> None:
    en = english()
    assert (en["open"], en["message"], en["send"]) == ("Open chat", "Message", "Send")
    assert en["rate_n"].replace("{n}", "3") == "Rate 3 of 5"
    assert (en["email"], en["notify"]) == ("Email", "Notify me")


def test_german_names_the_controls_as_spec_section_12_does() -> None:
    de = catalogue("de")
    assert (de["open"], de["message"], de["send"]) == ("Chat öffnen", "Nachricht", "Senden")


def test_catalogues_are_served_beside_the_widget_to_any_site(app_server: InProcessServer) -> None:
    with app_server.client() as client:
        for code in ("de", "fr", "es", "pt", "ar"):
            r = client.get(f"/widget/v1/locales/{code}.json", headers={"Origin": "https://shop.example"})
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/json")
            assert r.headers["access-control-allow-origin"] == "*"
            assert r.json() == catalogue(code)
        for unknown in ("en", "xx", "de.json"):  # English lives inside widget.js
            r = client.get(f"/widget/v1/locales/{unknown}.json")
            assert r.status_code == 404
            assert r.json()["error"]["code"] == "unknown_locale"
        assert client.get("/widget/v1/locales/..%2Fwidget.json").status_code == 404


def test_widget_settings_carry_locale_hours_away_message_and_ratings(
    app_server: InProcessServer, app_tenant: Tenant, app_api: httpx.Client
) -> None:
    default = app_api.get("/api/v1/widget-settings").json()
    assert default["locale"] is None and default["business_hours"] is None
    assert default["away_message"] == "" and default["ratings_enabled"] is True
    hours = {
        "timezone": "Europe/Berlin",
        "weekly": {"mon": [["09:00", "12:30"], ["13:30", "17:00"]], "sat": [["10:00", "24:00"]]},
    }
    r = app_api.patch(
        "/api/v1/widget-settings",
        json={"locale": "ar", "business_hours": hours, "away_message": "Back at nine.", "ratings_enabled": False},
    )
    assert r.status_code == 200, r.text
    assert r.json()["locale"] == "ar" and r.json()["business_hours"] == hours
    assert r.json()["away_message"] == "Back at nine." and r.json()["ratings_enabled"] is False
    with app_server.client() as client:
        public = client.get("/widget/v1/settings", params={"widget_key": app_tenant.widget_key}).json()
    assert public["locale"] == "ar" and public["business_hours"] == hours and public["ratings_enabled"] is False
    assert "allowed_origins" not in public and "identity_verification" not in public
    # null means something for these two: follow the browser, always open
    cleared = app_api.patch("/api/v1/widget-settings", json={"locale": None, "business_hours": None}).json()
    assert cleared["locale"] is None and cleared["business_hours"] is None
    assert cleared["away_message"] == "Back at nine."  # untouched


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"locale": "xx"}, "locale"),
        ({"locale": "de-DE"}, "locale"),
        ({"business_hours": {"timezone": "Mars/Olympus", "weekly": {}}}, "business_hours.timezone"),
        ({"business_hours": {"timezone": "UTC", "weekly": {"mon": [["17:00", "09:00"]]}}}, "business_hours.weekly.mon"),
        ({"business_hours": {"timezone": "UTC", "weekly": {"mon": [["9:00", "17:00"]]}}}, "business_hours.weekly.mon"),
        (
            {"business_hours": {"timezone": "UTC", "weekly": {"mon": [["09:00", "13:00"], ["12:00", "17:00"]]}}},
            "business_hours.weekly.mon",
        ),
        (
            {"business_hours": {"timezone": "UTC", "weekly": {"funday": [["09:00", "17:00"]]}}},
            "business_hours.weekly.funday",
        ),
        ({"away_message": "x" * 281}, "away_message"),
        ({"ratings_enabled": "yes"}, "ratings_enabled"),
    ],
)
def test_bad_customer_side_settings_are_a_422_naming_the_field(
    app_api: httpx.Client, body: dict[str, object], field: str
) -> None:
    r = app_api.patch("/api/v1/widget-settings", json=body)
    assert r.status_code == 422, r.text
    fields = [d["field"] for d in r.json()["error"]["details"]]
    assert any(f.startswith(field) for f in fields), fields
