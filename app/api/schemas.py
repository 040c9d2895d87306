"""Validated request, response and event shapes (pydantic, not tables).

These models validate every request body and generate the OpenAPI document, so the two
can never disagree. Limits follow SPEC §4; breaking one is a 422 naming the field.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from app.realtime.identity import normalize_origin  # the one origin rule; it also guards the CSP
from app.webviews.patterns import PatternError, check_pattern

# --- building blocks -------------------------------------------------------------------


class Strict(BaseModel):
    # strict: JSON types as declared (no "0" or 0 for false, no "5" for 5), as the OpenAPI document says.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, strict=True)


def _check_http_url(value: str) -> str:
    if len(value) > 2048:
        raise ValueError("URL is longer than 2048 characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise ValueError("URL must not contain whitespace or control characters")
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise ValueError("not a valid URL") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("only http and https URLs are allowed")
    if not parts.hostname:
        raise ValueError("URL must have a host")
    return value


HttpUrl = Annotated[str, AfterValidator(_check_http_url), Field(examples=["https://example.com/"])]
Label20 = Annotated[str, Field(min_length=1, max_length=20)]
Payload = Annotated[str, Field(max_length=1000)]
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$")


def _one_key(value: Any) -> str | None:
    """The tag of a one-key part object (``{"text": {...}}`` -> ``"text"``)."""
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    if isinstance(value, BaseModel):
        keys = [k for k, v in value.__dict__.items() if v is not None]
        return keys[0] if len(keys) == 1 else None
    return None


def one_of(*tagged: Any) -> Any:
    return Field(
        discriminator=Discriminator(
            _one_key,
            custom_error_type="invalid_part",
            custom_error_message="each part is an object with exactly one known key",
        )
    )


# --- message parts ----------------------------------------------------------------------


class TextBody(Strict):
    content: str = Field(min_length=1, max_length=4096)


FileId = Annotated[
    str,
    Field(min_length=5, max_length=64, pattern=r"^fil_[a-z0-9]+$", description="From POST /api/v1/files."),
]


class ImageBody(Strict):
    url: HttpUrl | None = None
    file_id: FileId | None = None
    alt: str = Field(default="", max_length=300)
    content_type: str | None = Field(default=None, max_length=100)
    width: int | None = Field(default=None, ge=1, le=4096)
    height: int | None = Field(default=None, ge=1, le=4096)

    @model_validator(mode="after")
    def _url_or_file(self) -> ImageBody:
        if (self.url is None) == (self.file_id is None):
            raise ValueError("an image needs exactly one of url and file_id")
        return self


class FileBody(Strict):
    """A file, video or audio part: an uploaded file by ``file_id`` (its name, type and size
    come from the upload, and every message carries a fresh signed ``url``), or a file that
    lives elsewhere by ``url`` and ``name``."""

    file_id: FileId | None = None
    url: HttpUrl | None = None
    name: str | None = Field(default=None, min_length=1, max_length=255)
    content_type: str | None = Field(default=None, max_length=100)
    size: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _file_or_url(self) -> FileBody:
        if (self.url is None) == (self.file_id is None):
            raise ValueError("a file needs exactly one of file_id and url")
        if self.url is not None and self.name is None:
            raise ValueError("a file given by url needs a name")
        return self


class UrlButtonBody(Strict):
    label: Label20
    url: HttpUrl
    target: Literal["_blank", "_self"] = "_blank"


class SelectOption(Strict):
    label: str = Field(min_length=1, max_length=80)
    value: str = Field(min_length=1, max_length=200)


class FormField(Strict):
    name: str = Field(min_length=1, max_length=64)
    label: str = Field(min_length=1, max_length=80)
    type: Literal["text", "email", "number", "password", "tel", "date", "select", "textarea"] = "text"
    required: bool = False
    options: list[SelectOption | Annotated[str, Field(min_length=1, max_length=80)]] | None = Field(
        default=None, min_length=1, max_length=100
    )
    pattern: str | None = Field(
        default=None,
        max_length=200,
        description="Checked in the browser and on the server (RE2, linear time): the subset both read alike "
        "(no backreferences, lookarounds or inline flags; escape ( ) [ ] { } / | - inside a class).",
    )
    pattern_message: str | None = Field(
        default=None, min_length=1, max_length=200, description="Shown when the value does not match `pattern`."
    )
    max_length: int | None = Field(default=None, ge=1, le=10000)
    placeholder: str | None = Field(default=None, max_length=80)
    autocomplete: str | None = Field(default=None, max_length=40, pattern=r"^[a-z0-9\- ]+$")

    @model_validator(mode="after")
    def _check(self) -> FormField:
        if not _FIELD_NAME.match(self.name):
            raise ValueError("name must be letters, digits, '_' or '-', starting with a letter")
        if self.type == "select" and not self.options:
            raise ValueError("a select field needs options")
        if self.pattern is None and self.pattern_message is not None:
            raise ValueError("pattern_message needs a pattern")
        return self

    @field_validator("pattern")
    @classmethod
    def _pattern_runs_alike_in_linear_time(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_pattern(value)
            except PatternError as exc:
                raise ValueError(str(exc)) from None
        return value


class WebViewForm(Strict):
    title: str = Field(min_length=1, max_length=80)
    fields: list[FormField] = Field(min_length=1, max_length=30)
    submit_label: str = Field(default="Submit", min_length=1, max_length=40)
    callback_url: HttpUrl

    @model_validator(mode="after")
    def _unique_names(self) -> WebViewForm:
        names = [f.name for f in self.fields]
        if len(names) != len(set(names)):
            raise ValueError("field names must be unique")
        return self


class WebViewBody(Strict):
    id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    label: str = Field(min_length=1, max_length=80)
    url: HttpUrl | None = None
    form: WebViewForm | None = None
    height: Literal["compact", "tall", "full"] = "tall"

    @model_validator(mode="after")
    def _exactly_one_target(self) -> WebViewBody:
        if (self.url is None) == (self.form is None):
            raise ValueError("a web view needs exactly one of url and form")
        return self


class PostbackBody(Strict):
    label: Label20
    payload: Payload


class UrlButtonPart(Strict):
    url_button: UrlButtonBody


class WebViewPart(Strict):
    web_view: WebViewBody


class PostbackPart(Strict):
    postback: PostbackBody


CardButton = Annotated[
    Annotated[UrlButtonPart, Tag("url_button")]
    | Annotated[WebViewPart, Tag("web_view")]
    | Annotated[PostbackPart, Tag("postback")],
    one_of(),
]


class Card(Strict):
    title: str = Field(min_length=1, max_length=80)
    subtitle: str | None = Field(default=None, max_length=80)
    image_url: HttpUrl | None = None
    buttons: list[CardButton] = Field(default_factory=list, max_length=3)


class CarouselBody(Strict):
    cards: list[Card] = Field(min_length=1, max_length=10)


class TextPart(Strict):
    text: TextBody


class ImagePart(Strict):
    image: ImageBody


class CarouselPart(Strict):
    carousel: CarouselBody


class FilePart(Strict):
    file: FileBody


class VideoPart(Strict):
    video: FileBody


class AudioPart(Strict):
    audio: FileBody


MessagePart = Annotated[
    Annotated[TextPart, Tag("text")]
    | Annotated[ImagePart, Tag("image")]
    | Annotated[UrlButtonPart, Tag("url_button")]
    | Annotated[WebViewPart, Tag("web_view")]
    | Annotated[CarouselPart, Tag("carousel")]
    | Annotated[FilePart, Tag("file")]
    | Annotated[VideoPart, Tag("video")]
    | Annotated[AudioPart, Tag("audio")],
    one_of(),
]


class Choice(Strict):
    label: Label20
    payload: Payload


class QuickRepliesBody(Strict):
    options: list[Choice] = Field(min_length=1, max_length=13)


class DropdownOption(Strict):
    label: str = Field(min_length=1, max_length=80)
    payload: Payload


class DropdownBody(Strict):
    placeholder: str = Field(default="Choose an option", min_length=1, max_length=80)
    options: list[DropdownOption] = Field(min_length=1, max_length=100)


class QuickRepliesPart(Strict):
    quick_replies: QuickRepliesBody


class DropdownPart(Strict):
    dropdown: DropdownBody


ReplyPart = Annotated[
    Annotated[QuickRepliesPart, Tag("quick_replies")] | Annotated[DropdownPart, Tag("dropdown")],
    one_of(),
]


class Actor(Strict):
    type: Literal["user", "bot", "agent", "system"]
    id: str | None = Field(default=None, max_length=64)


class ActorIn(Strict):
    type: Literal["user", "bot", "agent"]
    id: str | None = Field(default=None, max_length=64)


class ReplyTo(Strict):
    message_id: str = Field(min_length=1, max_length=64)
    payload: Payload


class MessageIn(Strict):
    actor: ActorIn = Field(default_factory=lambda: ActorIn(type="bot"))
    message_parts: list[MessagePart] = Field(default_factory=list, max_length=25)
    reply_parts: list[ReplyPart] = Field(default_factory=list, max_length=2)
    reply_to: ReplyTo | None = None
    client_message_id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-:.]+$")
    private: bool = Field(
        default=False,
        description="A private note for the team (actor bot or agent): listed by the API and the console, "
        "carried by message.created, never sent to the widget. A bot may add one while a human has control.",
    )

    @model_validator(mode="after")
    def _not_empty(self) -> MessageIn:
        if not self.message_parts and not self.reply_parts:
            raise ValueError("a message needs at least one message part or reply part")
        if self.private and self.actor.type == "user":
            raise ValueError("a private note comes from a bot or an agent, not the user")
        if self.private and self.reply_parts:
            raise ValueError("a private note has no reply parts (the customer never sees it)")
        return self


class MessageOut(BaseModel):
    id: str
    conversation_id: str
    seq: int
    actor: Actor
    message_parts: list[dict[str, Any]]
    reply_parts: list[dict[str, Any]]
    reply_to: ReplyTo | None = None
    client_message_id: str | None = None
    private: bool = False
    created_at: str


# --- users, agents, conversations -------------------------------------------------------


class UserIn(Strict):
    external_id: str | None = Field(default=None, min_length=1, max_length=255)
    name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    properties: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _properties_small(self) -> UserIn:
        if len(self.properties) > 100:
            raise ValueError("at most 100 properties")
        return self


class UserPatch(Strict):
    external_id: str | None = Field(default=None, min_length=1, max_length=255)
    name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    properties: dict[str, Any] | None = None


class UserOut(BaseModel):
    id: str
    external_id: str | None
    name: str | None
    email: str | None
    properties: dict[str, Any]
    created_at: str
    updated_at: str


class AgentIn(Strict):
    name: str = Field(min_length=1, max_length=120)
    kind: Literal["bot", "human"]
    avatar_url: HttpUrl | None = None


AgentStatus = Literal["online", "away"]


class AgentPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    avatar_url: HttpUrl | None = Field(default=None, description="An image URL; `null` removes the avatar.")
    status: Literal["online", "away"] | None = Field(
        default=None,
        description="A human's availability: only online humans are handed conversations (SPEC §11). "
        "An agent with a console account counts as away once all their consoles have been closed five minutes.",
    )

    @field_validator("name", "status")
    @classmethod
    def _not_null(cls, value: str | None) -> str:
        if value is None:  # runs only when sent: leaving a field out keeps it
            raise ValueError("leave the field out to keep it")
        return value


class AgentOut(BaseModel):
    id: str
    name: str
    kind: Literal["bot", "human"]
    avatar_url: str | None
    status: AgentStatus = Field(
        description="online or away: what the agent chose, or away when their consoles have all been closed a while."
    )
    is_default_bot: bool = Field(description="The bot that speaks for a bot message without `actor.id`.")
    created_at: str


class ConversationIn(Strict):
    user_id: str = Field(min_length=1, max_length=64)
    messages: list[MessageIn] = Field(default_factory=list, max_length=50)


# A conversation's tag: 1-50 characters of a-z 0-9 _ - : (SPEC §3).
ConversationTag = Annotated[str, Field(min_length=1, max_length=50, pattern=r"^[a-z0-9_:-]+$")]


class ConversationPatch(Strict):
    status: Literal["open", "resolved"] | None = None
    assignee_id: str | None = Field(default=None, max_length=64)
    tags: list[ConversationTag] | None = Field(
        default=None, max_length=20, description="Replaces the tags (at most 20; duplicates are dropped)."
    )
    properties: dict[str, Any] | None = Field(
        default=None, description="Merged into the conversation's properties (as a user's); null clears them."
    )

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, tags: list[str] | None) -> list[str] | None:
        return None if tags is None else list(dict.fromkeys(tags))


class CannedResponseIn(Strict):
    shortcut: str = Field(
        min_length=1, max_length=32, pattern=r"^[a-z0-9_-]{1,32}$",
        description="What follows `/` in the Inbox's Reply box: 1–32 of a-z 0-9 _ -, unique in the workspace.",
    )
    text: str = Field(min_length=1, max_length=4096)


class CannedResponseOut(BaseModel):
    id: str
    shortcut: str
    text: str
    created_at: str


class HandoverIn(Strict):
    to: Literal["human", "bot"]
    agent_id: str | None = Field(
        default=None, max_length=64,
        description="A human agent to hand to; without it, the available human with the fewest open "
        "conversations, or none (the conversation waits for a human).",
    )
    reason: str | None = Field(
        default=None, min_length=1, max_length=100, description="Carried by conversation.handover (default: api)."
    )

    @model_validator(mode="after")
    def _agent_for_humans(self) -> HandoverIn:
        if self.agent_id is not None and self.to == "bot":
            raise ValueError("agent_id names a human: hand to the bot without one")
        return self
class RatingOut(BaseModel):
    score: int = Field(ge=1, le=5)
    comment: str | None
    rated_at: str


class ConversationOut(BaseModel):
    id: str
    user_id: str
    status: Literal["open", "resolved"]
    assignee_id: str | None
    tags: list[str]
    properties: dict[str, Any]
    assignee_kind: Literal["bot", "human"] | None
    handled_by: Literal["bot", "human"]
    rating: RatingOut | None = Field(description="The customer's rating after a resolve (SPEC §12), or null.")
    created_at: str
    updated_at: str
    last_message_seq: int


class TypingIn(Strict):
    actor: ActorIn = Field(default_factory=lambda: ActorIn(type="bot"))
    on: bool = True


# --- tokens, settings -------------------------------------------------------------------

Scope = Literal["read", "write", "admin"]
DEFAULT_SCOPES: list[Scope] = ["read", "write"]  # a token created without scopes


class TokenIn(Strict):
    name: str = Field(min_length=1, max_length=120)
    scopes: list[Scope] = Field(default_factory=lambda: list(DEFAULT_SCOPES), min_length=1)


class TokenOut(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class TokenCreated(TokenOut):
    token: str


# --- the customer's side (SPEC §12) ------------------------------------------------------

WIDGET_LOCALES = ("en", "de", "fr", "es", "pt", "ar")  # each has static/widget-locale-CODE.json (but en)
WidgetLocale = Literal["en", "de", "fr", "es", "pt", "ar"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$|^24:00$")


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value[:64]!r} is not an IANA time zone (like Europe/Berlin)") from None
    return value


Span = Annotated[list[str], Field(min_length=2, max_length=2, examples=[["09:00", "17:00"]])]


def _check_spans(value: list[list[str]]) -> list[list[str]]:
    """Each span is ["HH:MM", "HH:MM"] with the end after the start ("24:00" ends a day);
    spans of one day are in order and do not overlap."""
    previous_end = ""
    for start, end in value:
        if not _CLOCK.match(start) or not _CLOCK.match(end) or start == "24:00":
            raise ValueError(f"{start!r}-{end!r}: times are HH:MM, 00:00 to 24:00")
        if end <= start:
            raise ValueError(f"{start}-{end}: a span ends after it starts")
        if start < previous_end:
            raise ValueError(f"{start}-{end}: spans of one day are in order and do not overlap")
        previous_end = end
    return value


Spans = Annotated[list[Span], AfterValidator(_check_spans), Field(max_length=6)]


class BusinessHours(Strict):
    timezone: Annotated[str, AfterValidator(_check_timezone)] = Field(
        max_length=64, examples=["Europe/Berlin"], description="An IANA time zone: the hours are its wall-clock times."
    )
    weekly: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], Spans] = Field(
        examples=[{"mon": [["09:00", "17:00"]], "tue": [["09:00", "12:30"], ["13:30", "17:00"]]}],
        description="Open spans per weekday; a day left out is closed all day.",
    )


class WidgetSettingsOut(BaseModel):
    widget_key: str
    allowed_origins: list[str]
    theme_color: str
    greeting: str
    identity_verification: bool
    locale: WidgetLocale | None = Field(
        description="The widget's language when the page sets none; null: the browser's."
    )
    away_message: str = Field(
        description="Shown in the widget's header outside business hours; empty: a default line in the "
        "visitor's language."
    )
    business_hours: BusinessHours | None
    ratings_enabled: bool


def _check_origin(value: str) -> str:
    try:
        return normalize_origin(value)
    except ValueError as exc:
        raise ValueError(f"{value[:100]!r} is not an origin: {exc}") from None


class WidgetSettingsPatch(Strict):
    allowed_origins: list[Annotated[str, AfterValidator(_check_origin)]] | None = Field(
        default=None,
        max_length=50,
        description="Origins that may embed the widget, each scheme://host[:port] (http or https; no path, "
        "query, userinfo or wildcard); stored lowercase without a default port. Empty: any site.",
    )
    theme_color: str | None = Field(default=None, pattern=r"^#[0-9a-fA-F]{6}$")
    greeting: str | None = Field(default=None, max_length=280)
    identity_verification: bool | None = None
    locale: WidgetLocale | None = Field(
        default=None, description="en, de, fr, es, pt or ar; null: follow the visitor's browser."
    )
    away_message: str | None = Field(default=None, max_length=280)
    business_hours: BusinessHours | None = Field(default=None, description="null: always open.")
    ratings_enabled: bool | None = None


class WorkspaceOut(BaseModel):
    id: str
    name: str
    retention_days: int | None = Field(
        description="Resolved conversations unchanged for this many days are erased; null keeps them."
    )


class WorkspacePatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    retention_days: int | None = Field(
        default=None, ge=1, le=36500, description="Days to keep resolved conversations; null keeps them for ever."
    )


class Page(BaseModel):
    data: list[Any]
    next_cursor: str | None


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    error: ErrorBody


class FileOut(BaseModel):
    id: str = Field(examples=["fil_0mh3k2x9qa1b2c3d4e5f6g7h"])
    name: str
    content_type: str = Field(description="Read from the file's bytes, never taken from the client.")
    size: int
    url: str = Field(description="Signed download link, valid for at least an hour (until expires_at).")
    expires_at: str
    created_at: str


class WebviewVerifyIn(Strict):
    token: str = Field(min_length=1, max_length=4096)


class WebviewContextOut(BaseModel):
    workspace_id: str
    conversation_id: str
    user_id: str
    message_id: str
    webview_id: str
    expires_at: str
