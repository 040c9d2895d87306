"""``/api/v1/reports/summary``: conversations, messages, response and resolution times and
ratings over a range of UTC days (SPEC §12); the console's Reports page reads the same."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app import reports
from app.api.framework import Call, Endpoint

DEFAULT_DAYS = 30
# A calendar day as the document says (YYYY-MM-DD): pydantic alone also reads a number ("0")
# as seconds since 1970, which no client reading the OpenAPI document would send on purpose.
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ReportQuery(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    from_: date | None = Field(
        default=None, alias="from", description="First day (UTC, YYYY-MM-DD); default: 29 days before `to`."
    )
    to: date | None = Field(default=None, description="Last day, included (UTC, YYYY-MM-DD); default: today.")

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _a_day(cls, value: Any) -> Any:
        if value is not None and not (isinstance(value, str) and _DAY.match(value)):
            raise ValueError("a day as YYYY-MM-DD, such as 2026-11-30")
        return value

    @model_validator(mode="after")
    def _range(self) -> ReportQuery:
        if self.from_ is not None and self.to is not None:
            if self.to < self.from_:
                raise ValueError("to is before from")
            if (self.to - self.from_).days >= reports.MAX_DAYS:
                raise ValueError(f"at most {reports.MAX_DAYS} days")
        return self

    def span(self) -> tuple[date, date]:
        end = self.to or (self.from_ + timedelta(days=DEFAULT_DAYS - 1) if self.from_ else datetime.now(UTC).date())
        start = self.from_ or end - timedelta(days=DEFAULT_DAYS - 1)
        return start, end


class ReportFigures(BaseModel):
    conversations: int = Field(description="Conversations started.")
    messages: int = Field(description="Messages sent (customers', bots' and agents'; no notes or system lines).")
    median_first_response_seconds: float | None = Field(
        description="From a conversation's first customer message to the first bot or agent reply."
    )
    median_resolution_seconds: float | None = Field(
        description="From a conversation's start to its (last) resolve, for those resolved."
    )
    rating_average: float | None = Field(description="The average score (1-5) of the ratings given.")
    ratings: int = Field(description="Ratings given.")


class ReportDay(ReportFigures):
    date: str = Field(examples=["2026-11-30"])


class ReportOut(ReportFigures):
    from_: str = Field(alias="from", examples=["2026-11-01"])
    to: str = Field(examples=["2026-11-30"])
    days: list[ReportDay]


def summary(call: Call) -> dict[str, Any]:
    start, end = call.query.span()
    return reports.summary(call.session, call.workspace_id, start, end)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/reports/summary",
        summary,
        "Conversations, response times and ratings, in total and per day",
        "Reports",
        query=ReportQuery,
        response=ReportOut,
        errors=(422,),
        description="Days are UTC. A conversation counts on the day it started (with its first response "
        "and resolution), a message on its day, a rating on the day it was given. At most 366 days.",
    ),
]
