"""A loopback stand-in for Discord (REST, gateway, CDN on 127.0.0.1) for end-to-end tests.

The REAL discord.py client (``bot.start(token)``) runs against it over real sockets: aiohttp's
HTTP and websocket stacks, multipart uploads, attachment downloads, zlib-stream gateway
compression and real timing against the 3-second rule. It models what an image bot touches and
enforces Discord's documented limits on that; any other route is a recorded 404.

Quick start::

    async with FakeDiscord() as fake:
        guild = fake.add_guild("Test server")
        channel = guild.add_text_channel("images")
        alice = guild.add_member("alice")
        admin = guild.add_member("root", permissions=MANAGE_GUILD)
        async with fake.run_bot(bot):  # bot = commands.Bot(..., guild_ready_timeout=0.05)
            it = await fake.slash(alice, channel, "img2img", image=("cat.png", png), prompt="x")
            result = await fake.wait_until(lambda: it.original and it.original.attachments)
            assert it.ack_latency < 3 and result[0].data.startswith(b"\x89PNG")

Pointing a bot at it: ``run_bot`` does it for a ``discord.Client``; otherwise
``with fake.patch_discord_py():`` sets ``discord.http.Route.BASE = fake.api_base`` and
``DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)`` (restored on exit), or give a
bot that reads its settings ``fake.env`` (DISCORD_TOKEN, DISCORD_API_BASE_URL,
DISCORD_GATEWAY_URL). Route.BASE is process-wide: one stand-in per process at a time.

Constructor: ``FakeDiscord(token="fake-token", *, bot_name="sdbot", ack_deadline=3.0,
token_lifetime=900.0, upload_limit=10 MiB, cdn_ttl=86400.0, heartbeat_interval_ms=41250,
privileged_intents=ALL_PRIVILEGED, bot_permissions=DEFAULT_BOT_PERMISSIONS)``; all are
attributes a test may change later. An async context manager (``start()``/``close()``) on a
random free port. ``api_base``, ``gateway_url``, ``base_url``, ``env``, ``application_id``,
``bot_user``, ``connected``, ``intents`` (of the current gateway session).

Model (dataclasses; builders are synchronous and dispatch the gateway events Discord would,
filtered by the bot's intents): ``fake.add_guild(name, *, everyone_permissions=...,
with_bot=True)`` -> ``Guild`` (with ``owner``, ``bot_member`` (managed role holding
``bot_permissions``), ``everyone``); ``guild.add_text_channel(name)`` -> ``Channel``;
``guild.add_role(name, permissions=0, *, mentionable=False)`` -> ``Role``;
``guild.add_member(name, *, roles=(), permissions=None)`` -> ``Member`` (``permissions`` gives
a personal role holding those bits); ``channel.set_overwrite(role_or_member, allow=, deny=)``;
``fake.give_role(member, role)``, ``fake.remove_role(member, role)``,
``fake.set_role_permissions(role, bits)``; ``member.permissions_in(channel)`` is Discord's
algorithm (owner, @everyone, roles, ADMINISTRATOR, channel overwrites, no VIEW_CHANNEL -> 0).
Bits are module constants (``MANAGE_GUILD = 0x20``, ``MANAGE_MESSAGES = 0x2000``, ...).

Acting as a member (async; each returns an ``Interaction`` once INTERACTION_CREATE is queued on
the gateway, and raises ``CommandRefused`` for what Discord's own client would never send,
unless ``raw=True`` sends it anyway):
``fake.slash(member, channel, "quota grant", user=bob, amount=5)`` - CHAT_INPUT, checked against
the SYNCED command (exists, subcommand path, declared options, types, required, min/max values
and lengths, choices, ``default_member_permissions``); attachment options take ``("a.png",
data)`` or ``Upload(name, data, size=<a lie>, content_type=...)`` and are served by the CDN;
members, users, roles and channels are model objects, put in ``data.resolved``.
``fake.message_command(member, message, "Img2img")`` - type 3 with ``target_id`` and
``resolved.messages``. ``fake.click(member, message, custom_id)`` - a button on a live message
the bot posted. ``fake.submit_modal(member, interaction, {custom_id: value})`` - the modal the
bot opened on ``interaction``. ``fake.redeliver(interaction)`` - the same id and token again.
``fake.post_message(member, channel, content, files=[...])`` - a member's own message.

``Interaction`` record: ``id``, ``type``, ``name``, ``member``, ``channel``, ``data``,
``member_permissions``/``app_permissions`` (as sent), ``deliveries``, ``response_type``,
``acknowledged``, ``ack_latency`` (seconds from dispatch to the accepted first callback),
``original`` and ``followups`` (``Message``), ``modal`` (what a type-9 response opened).

Interaction rules: the first callback must arrive within ``ack_deadline`` (else 404 10062) and
only once (else 400 40060); a callback type must suit the interaction; webhook calls need an
acknowledged interaction (else 404 10015 Unknown Webhook) and a token younger than
``token_lifetime`` (else 401 50027 Invalid Webhook Token - Discord's answer for an expired
token; 10062 only ever comes from the callback route); after a type-5 defer the first
follow-up EDITS the loading original. ``fake.advance_time(seconds)`` moves the clock these
rules and the CDN expiry use. Callbacks honour ``with_response``; follow-ups honour ``wait``.

Message rules (callbacks, follow-ups, webhook and channel edits, channel posts): content <=
2000; <= 10 embeds with Discord's embed limits and 6000 characters in all; <= 10 attachments
(400 30015); each file <= ``upload_limit`` (413 40005); <= 5 action rows of 1-5 buttons,
``custom_id`` 1-100 characters and unique; well-formed ``allowed_mentions``; no empty message
(50006); channel routes check the bot's channel permissions (50001/50013) and authorship
(50005); edits keep attachments only when listed in ``attachments``; ``enforce_nonce``
deduplicates (discord.py's ``send()`` always sets it). Bad bodies get 400 50035 with Discord's
nested ``errors``. Stored messages get what Discord adds: component ``id``s, embed ``type``
and field ``inline``, ``attachment://`` embed images resolved, signed attachment URLs,
``interaction_metadata``.

Records (none holds an interaction token or the bot token): ``requests`` (``RequestRecord``:
method, spec route template, redacted path, query, request JSON or ``payload_json``, uploaded
(filename, size), status, response, Content-Type, ``injected``), ``unknown_routes``,
``callbacks`` (``CallbackRecord``, latency of every attempt), ``interactions``, ``messages``
(``{channel_id: [Message]}``, deleted and ephemeral ones included; ``channel.messages`` is the
live view; ``Message`` has ``content``, ``embeds``, ``attachments`` (``.data`` bytes),
``components``, ``custom_ids``, ``flags``, ``ephemeral``, ``loading``, ``allowed_mentions``,
``author``, ``interaction``, ``history`` (payloads before each edit), ``deleted``),
``commands`` (``{None or guild_id: [command]}``), ``identifies``, ``resumes``,
``gateway_log``, ``cdn_requests``.

Faults: ``fake.fail(method, route, *, status, code=0, message=None, times=1, retry_after=1.0,
is_global=False, after_effect=False)`` - 429s carry the headers discord.py reads (incl. Via);
``after_effect=True`` performs the request, then answers with the error.
``fake.delay(method, route, seconds, *, times=None)``. ``await fake.drop_gateway(*,
resumable=True, code=4000)`` - the bot RESUMEs on ``resume_gateway_url`` and missed events are
replayed; with ``resumable=False`` the RESUME gets op 9 and the bot IDENTIFYs again (discord.py
waits 5 s first). Routes are the spec's templates listed in ``fake.endpoints``, e.g.
``"/interactions/{interaction_id}/{interaction_token}/callback"``.

Helpers: ``await fake.wait_until(predicate, within=5.0)`` returns the first truthy value;
``fake.pings(message)`` -> ``Pings(users, roles, everyone)``: who the message would notify
under Discord's rules (``allowed_mentions`` absent means parse everything; roles need to be
mentionable or the author to hold MENTION_EVERYONE, which the bot has by default so that only
``allowed_mentions`` can make a message silent; edits are judged as if sent).

Not modelled: DMs, threads, reactions, select menus, components V2, autocomplete, user context
menus, voice, presences, real rate-limit buckets (every answer carries generous
``X-RateLimit-*`` headers), zstd-stream compression (plain text frames instead), server-side
heartbeat timeouts, sharding beyond one shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import io
import json
import logging
import math
import mimetypes
import re
import secrets
import socket
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import discord
import yarl
from aiohttp import BodyPartReader, WSMsgType, web
from PIL import Image

log = logging.getLogger(__name__)

# Permission bits (https://discord.com/developers/docs/topics/permissions).
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
ALL_PERMISSIONS = (1 << 51) - 1
DEFAULT_EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
)
# MENTION_EVERYONE is included so that pings() is strict: only allowed_mentions can stop a ping.
DEFAULT_BOT_PERMISSIONS = DEFAULT_EVERYONE_PERMISSIONS | MENTION_EVERYONE

# Gateway intents.
GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_PRESENCES = 1 << 8
GUILD_MESSAGES = 1 << 9
MESSAGE_CONTENT = 1 << 15
ALL_PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT

# Message flags.
SUPPRESS_EMBEDS = 1 << 2
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_NOTIFICATIONS = 1 << 12
IS_COMPONENTS_V2 = 1 << 15

MIB = 1024 * 1024
API_PREFIX = "/api/v10"
REDACTED = "[redacted]"
DISCORD_EPOCH_MS = 1_420_070_400_000
REPLAY_LIMIT = 1000  # dispatches kept per gateway session for RESUME
NONCE_WINDOW = 120.0  # seconds during which enforce_nonce deduplicates (Discord: "a few minutes")

# Application command option types.
SUB_COMMAND, SUB_COMMAND_GROUP, STRING, INTEGER, BOOLEAN = 1, 2, 3, 4, 5
USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 6, 7, 8, 9, 10, 11
MAX_SAFE_INTEGER = 2**53


class DiscordError(Exception):
    """An error answer in Discord's shape: ``{"code", "message"[, "errors"]}``."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def reply(self) -> Reply:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors is not None:
            body["errors"] = self.errors
        return Reply(self.status, body)


def _error(kind: tuple[int, int, str]) -> DiscordError:
    return DiscordError(*kind)


UNAUTHORIZED = (401, 0, "401: Unauthorized")
NOT_FOUND = (404, 0, "404: Not Found")
UNKNOWN_APPLICATION = (404, 10002, "Unknown Application")
UNKNOWN_CHANNEL = (404, 10003, "Unknown Channel")
UNKNOWN_MESSAGE = (404, 10008, "Unknown Message")
UNKNOWN_WEBHOOK = (404, 10015, "Unknown Webhook")
UNKNOWN_INTERACTION = (404, 10062, "Unknown interaction")
TOO_MANY_ATTACHMENTS = (400, 30015, "Maximum number of attachments in a message reached (10)")
ENTITY_TOO_LARGE = (413, 40005, "Request entity too large")
ALREADY_ACKNOWLEDGED = (400, 40060, "Interaction has already been acknowledged.")
MISSING_ACCESS = (403, 50001, "Missing Access")
NOT_AUTHOR = (403, 50005, "Cannot edit a message authored by another user")
EMPTY_MESSAGE = (400, 50006, "Cannot send an empty message")
MISSING_PERMISSIONS = (403, 50013, "Missing Permissions")
INVALID_WEBHOOK_TOKEN = (401, 50027, "Invalid Webhook Token")
INVALID_JSON = (400, 50109, "The request body contains invalid JSON.")


class _FormErrors:
    """Collects field errors and raises 50035 Invalid Form Body with Discord's nested shape."""

    def __init__(self) -> None:
        self._errors: list[tuple[tuple[str | int, ...], str, str]] = []

    def add(self, path: tuple[str | int, ...], code: str, message: str) -> None:
        self._errors.append((path, code, message))

    def max_length(self, path: tuple[str | int, ...], value: Any, limit: int) -> None:
        if isinstance(value, str | list) and len(value) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")

    def raise_if_any(self) -> None:
        if not self._errors:
            return
        tree: dict[str, Any] = {}
        for path, code, message in self._errors:
            node = tree
            for part in path:
                node = node.setdefault(str(part), {})
            node.setdefault("_errors", []).append({"code": code, "message": message})
        raise DiscordError(400, 50035, "Invalid Form Body", tree)


class CommandRefused(ValueError):
    """The stand-in will not send an interaction Discord's own client would never send."""


# ---------------------------------------------------------------------------------------------
# Model


@dataclass(eq=False)
class User:
    id: int
    name: str
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.name,
            "global_name": None if self.bot else self.name.title(),
            "discriminator": "0",
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
            "primary_guild": None,
            "avatar_decoration_data": None,
            "collectibles": None,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass(eq=False)
class Role:
    id: int
    guild: Guild = field(repr=False)
    name: str
    permissions: int
    position: int
    mentionable: bool = False
    managed_by: User | None = None

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": self.managed_by is not None,
            "mentionable": self.mentionable,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
            "description": None,
        }
        if self.managed_by is not None:
            data["tags"] = {"bot_id": str(self.managed_by.id)}
        return data


@dataclass
class Overwrite:
    allow: int = 0
    deny: int = 0


@dataclass(eq=False)
class Member:
    user: User
    guild: Guild = field(repr=False)
    roles: list[Role] = field(default_factory=list)
    joined_at: str = ""

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def base_permissions(self) -> int:
        if self.guild.owner is self:
            return ALL_PERMISSIONS
        bits = self.guild.everyone.permissions
        for role in self.roles:
            bits |= role.permissions
        return ALL_PERMISSIONS if bits & ADMINISTRATOR else bits

    def permissions_in(self, channel: Channel) -> int:
        """Discord's algorithm: base permissions, then @everyone, role and member overwrites."""
        bits = self.base_permissions
        if bits & ADMINISTRATOR:
            return ALL_PERMISSIONS
        everyone = channel.overwrites.get(self.guild.id)
        if everyone:
            bits = (bits & ~everyone.deny) | everyone.allow
        allow = deny = 0
        for role in self.roles:
            ow = channel.overwrites.get(role.id)
            if ow:
                allow, deny = allow | ow.allow, deny | ow.deny
        bits = (bits & ~deny) | allow
        mine = channel.overwrites.get(self.id)
        if mine:
            bits = (bits & ~mine.deny) | mine.allow
        return bits if bits & VIEW_CHANNEL else 0

    def payload(self, *, with_user: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "roles": [str(r.id) for r in self.roles],
            "joined_at": self.joined_at,
            "nick": None,
            "avatar": None,
            "banner": None,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.payload()
        return data


@dataclass(eq=False)
class Channel:
    id: int
    guild: Guild = field(repr=False)
    name: str
    position: int
    overwrites: dict[int, Overwrite] = field(default_factory=dict)

    @property
    def messages(self) -> list[Message]:
        """Live (not deleted) messages, oldest first."""
        return [m for m in self.guild.fake.messages.get(self.id, []) if not m.deleted]

    def set_overwrite(self, target: Role | Member, *, allow: int = 0, deny: int = 0) -> None:
        self.overwrites[target.id] = Overwrite(allow, deny)
        self.guild.fake._guild_dispatch(self.guild, "CHANNEL_UPDATE", self.payload(), GUILDS)

    def payload(self, *, for_member: Member | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": 0,
            "guild_id": str(self.guild.id),
            "name": self.name,
            "position": self.position,
            "flags": 0,
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "permission_overwrites": [
                {
                    "id": str(target),
                    "type": 0 if target in self.guild.roles else 1,
                    "allow": str(ow.allow),
                    "deny": str(ow.deny),
                }
                for target, ow in self.overwrites.items()
            ],
        }
        if for_member is not None:
            data["permissions"] = str(for_member.permissions_in(self))
        return data


@dataclass(eq=False)
class Guild:
    id: int
    fake: FakeDiscord = field(repr=False)
    name: str
    roles: dict[int, Role] = field(default_factory=dict, repr=False)
    channels: dict[int, Channel] = field(default_factory=dict, repr=False)
    members: dict[int, Member] = field(default_factory=dict, repr=False)
    owner: Member | None = field(default=None, repr=False)
    bot_member: Member | None = field(default=None, repr=False)

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    def add_role(self, name: str, permissions: int = 0, *, mentionable: bool = False) -> Role:
        role = Role(self.fake._ids.next(), self, name, permissions, len(self.roles), mentionable)
        self.roles[role.id] = role
        self.fake._guild_dispatch(
            self, "GUILD_ROLE_CREATE", {"guild_id": str(self.id), "role": role.payload()}, GUILDS
        )
        return role

    def add_text_channel(self, name: str) -> Channel:
        channel = Channel(self.fake._ids.next(), self, name, len(self.channels))
        self.channels[channel.id] = channel
        self.fake.messages.setdefault(channel.id, [])
        self.fake._guild_dispatch(self, "CHANNEL_CREATE", channel.payload(), GUILDS)
        return channel

    def add_member(
        self, name: str, *, roles: Iterable[Role] = (), permissions: int | None = None
    ) -> Member:
        """A new member; ``permissions`` gives them a personal role holding exactly those bits."""
        member = self._join(User(self.fake._ids.next(), name), list(roles))
        if permissions is not None:
            self.fake.give_role(member, self.add_role(f"{name}-permissions", permissions))
        return member

    def _join(self, user: User, roles: list[Role]) -> Member:
        member = Member(user, self, roles, self.fake._timestamp())
        self.members[user.id] = member
        event = {"guild_id": str(self.id), **member.payload()}
        self.fake._guild_dispatch(self, "GUILD_MEMBER_ADD", event, GUILD_MEMBERS)
        return member

    def payload(self, *, members: Iterable[Member]) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner.id) if self.owner else None,
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "features": [],
            "roles": [r.payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "channels": [c.payload() for c in self.channels.values()],
            "threads": [],
            "members": [m.payload() for m in members],
            "member_count": len(self.members),
            "joined_at": self.bot_member.joined_at if self.bot_member else None,
            "large": False,
            "unavailable": False,
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_progress_bar_enabled": False,
        }


@dataclass
class Upload:
    """A file a member attaches. ``size`` and ``content_type`` may lie, as clients can."""

    filename: str
    data: bytes
    size: int | None = None
    content_type: str | None = None
    description: str | None = None


@dataclass(eq=False)
class Attachment:
    id: int
    channel_id: int
    filename: str
    data: bytes = field(repr=False)
    size: int
    content_type: str | None
    width: int | None
    height: int | None
    ephemeral: bool = False
    description: str | None = None

    @property
    def path(self) -> str:
        kind = "ephemeral-attachments" if self.ephemeral else "attachments"
        return f"/{kind}/{self.channel_id}/{self.id}/{self.filename}"


@dataclass(eq=False)
class Message:
    id: int
    channel: Channel = field(repr=False)
    author: User
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    allowed_mentions: dict[str, Any] | None = None
    interaction: Interaction | None = field(default=None, repr=False)
    type: int = 0
    tts: bool = False
    nonce: str | int | None = None
    reference: Message | None = field(default=None, repr=False)
    created_at: str = ""
    edited_at: str | None = None
    deleted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    @property
    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in _walk_components(self.components) if "custom_id" in c]


@dataclass(frozen=True)
class Pings:
    users: frozenset[int] = frozenset()
    roles: frozenset[int] = frozenset()
    everyone: bool = False

    def __bool__(self) -> bool:
        return bool(self.users or self.roles or self.everyone)


@dataclass(eq=False)
class Interaction:
    """One interaction the stand-in sent, and everything the bot did with it (no token here)."""

    id: int
    type: int  # 2 application command, 3 message component, 5 modal submit
    name: str  # command path, or the component/modal custom_id
    member: Member
    channel: Channel = field(repr=False)
    data: dict[str, Any] = field(repr=False)
    member_permissions: int
    app_permissions: int
    message: Message | None = field(default=None, repr=False)  # component/modal source message
    opened_by: Interaction | None = field(default=None, repr=False)  # for modal submits
    created_at: float = 0.0  # stand-in clock
    sent_at: float = 0.0  # time.monotonic() when queued on the gateway
    deliveries: int = 1
    response_type: int | None = None
    acked_at: float | None = None
    original: Message | None = field(default=None, repr=False)
    followups: list[Message] = field(default_factory=list, repr=False)
    modal: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None

    @property
    def ack_latency(self) -> float | None:
        """Seconds from dispatch to the accepted first callback (None if never acknowledged)."""
        return None if self.acked_at is None else self.acked_at - self.sent_at


@dataclass
class RequestRecord:
    method: str
    route: str  # the spec's path template ("" for unknown routes)
    path: str  # tokens redacted
    query: dict[str, str]
    started: float
    body: Any = None  # JSON body, or payload_json of a multipart body
    files: list[tuple[str, int]] = field(default_factory=list)  # (filename, size)
    status: int = 0
    response: Any = None
    content_type: str | None = None
    injected: bool = False
    duration: float = 0.0


@dataclass
class CallbackRecord:
    interaction: Interaction = field(repr=False)
    type: int | None
    status: int
    code: int | None
    latency: float  # seconds since the interaction was dispatched
    data: dict[str, Any] | None = None


@dataclass
class IdentifyRecord:
    intents: int
    shard: list[int] | None
    properties: dict[str, Any]
    path: str


@dataclass
class ResumeRecord:
    session_id: str | None
    seq: int | None
    accepted: bool
    replayed: int
    path: str


@dataclass
class GatewayRecord:
    direction: str  # "sent" or "received"
    op: int
    event: str | None = None
    seq: int | None = None


@dataclass
class CdnRecord:
    path: str
    status: int


@dataclass
class FaultRule:
    method: str
    route: str
    remaining: int | None  # None = forever
    status: int | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    after_effect: bool = False
    hits: int = 0


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> web.Response:
        if self.body is None:
            return web.Response(status=self.status, headers=self.headers)
        # Exactly "application/json": discord.py's json_or_text() parses nothing else.
        headers = {**self.headers, "Content-Type": "application/json"}
        return web.Response(
            status=self.status, body=json.dumps(self.body).encode(), headers=headers
        )


@dataclass
class _File:
    index: int
    filename: str
    data: bytes = field(repr=False)


@dataclass
class _Body:
    payload: Any = None
    files: list[_File] = field(default_factory=list)


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    path: str
    compressor: Any = None  # zlib compressobj for compress=zlib-stream
    session: _Session | None = None  # set by IDENTIFY or a successful RESUME
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)

    def send(self, frame: dict[str, Any]) -> None:
        self.queue.put_nowait(frame)


@dataclass(eq=False)
class _Session:
    id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    resumable: bool = True
    connection: _Connection | None = None
    buffer: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=REPLAY_LIMIT))


_CDN_PATH = (
    "/{kind:attachments|ephemeral-attachments}/{channel_id:\\d+}/{attachment_id:\\d+}/{filename}"
)
_Handler = Callable[[web.Request, _Body], Awaitable[Reply]]


@dataclass(frozen=True)
class _Endpoint:
    method: str
    route: str
    handler: _Handler
    bot_auth: bool = True


class _Snowflakes:
    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        now = int(time.time() * 1000) - DISCORD_EPOCH_MS
        self._last = max(now << 22, self._last + 1)
        return self._last


T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# The stand-in


class FakeDiscord:
    def __init__(
        self,
        token: str = "fake-token",
        *,
        bot_name: str = "sdbot",
        ack_deadline: float = 3.0,
        token_lifetime: float = 900.0,
        upload_limit: int = 10 * MIB,
        cdn_ttl: float = 86_400.0,
        heartbeat_interval_ms: int = 41_250,
        privileged_intents: int = ALL_PRIVILEGED,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
    ) -> None:
        self.token = token
        self.ack_deadline = ack_deadline
        self.token_lifetime = token_lifetime
        self.upload_limit = upload_limit
        self.cdn_ttl = cdn_ttl
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.privileged_intents = privileged_intents
        self.bot_permissions = bot_permissions
        self._ids = _Snowflakes()
        self.application_id = self._ids.next()
        self.bot_user = User(self._ids.next(), bot_name, bot=True)
        self.app_owner = User(self._ids.next(), "app-owner")
        self._cdn_secret = secrets.token_bytes(32)
        self._clock_offset = 0.0
        self.guilds: dict[int, Guild] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {None: []}
        self._command_ids: dict[tuple[int | None, str, int], int] = {}
        self.messages: dict[int, list[Message]] = {}
        self._messages_by_id: dict[int, Message] = {}
        self._attachments: dict[int, Attachment] = {}
        self.interactions: list[Interaction] = []
        self._tokens: dict[str, Interaction] = {}
        self._token_of: dict[int, str] = {}
        self.requests: list[RequestRecord] = []
        self.unknown_routes: list[RequestRecord] = []
        self.callbacks: list[CallbackRecord] = []
        self.identifies: list[IdentifyRecord] = []
        self.resumes: list[ResumeRecord] = []
        self.gateway_log: deque[GatewayRecord] = deque(maxlen=10_000)
        self.cdn_requests: list[CdnRecord] = []
        self.faults: list[FaultRule] = []
        self._session: _Session | None = None
        self._connections: set[_Connection] = set()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.endpoints = self._endpoints()

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application(client_max_size=12 * self.upload_limit)
        for endpoint in self.endpoints:
            app.router.add_route(
                endpoint.method, API_PREFIX + endpoint.route, self._rest_handler(endpoint)
            )
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway/resume", self._gateway)
        for prefix in ("", "/media"):
            app.router.add_get(prefix + _CDN_PATH, self._cdn)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        # access_log=None: aiohttp's access log would print interaction tokens from URLs.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        for connection in list(self._connections):
            await connection.ws.close(code=1001, message=b"stand-in shutting down")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def env(self) -> dict[str, str]:
        return {
            "DISCORD_TOKEN": self.token,
            "DISCORD_API_BASE_URL": self.api_base,
            "DISCORD_GATEWAY_URL": self.gateway_url,
        }

    @contextlib.contextmanager
    def patch_discord_py(self) -> Iterator[None]:
        """Point discord.py's REST base and default gateway here; restored on exit."""
        saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved

    @contextlib.asynccontextmanager
    async def run_bot(
        self, bot: discord.Client, *, token: str | None = None, ready_within: float = 10.0
    ) -> AsyncIterator[discord.Client]:
        """Start ``bot.start(token)`` against the stand-in, wait for ready, close it on exit.

        A bot that fails to start (e.g. LoginFailure) raises here instead of timing out.
        """
        with self.patch_discord_py():
            task = asyncio.create_task(bot.start(token or self.token))
            ready = asyncio.create_task(bot.wait_until_ready())
            try:
                done, _ = await asyncio.wait(
                    {task, ready}, timeout=ready_within, return_when=asyncio.FIRST_COMPLETED
                )
                if task in done:
                    task.result()
                    raise RuntimeError("bot.start() returned before the bot was ready")
                if ready not in done:
                    raise TimeoutError(f"bot not ready within {ready_within}s")
                yield bot
            finally:
                ready.cancel()
                await bot.close()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(task, ready, return_exceptions=True)

    # -- clock and waiting ----------------------------------------------------------------------

    def now(self) -> float:
        """The stand-in's monotonic clock (seconds), which advance_time() moves forward."""
        return time.monotonic() + self._clock_offset

    def advance_time(self, seconds: float) -> None:
        self._clock_offset += seconds
        self._touch()

    def _wall(self) -> float:
        return time.time() + self._clock_offset

    def _timestamp(self) -> str:
        return datetime.fromtimestamp(self._wall(), UTC).isoformat()

    def _touch(self) -> None:
        self._changed.set()

    async def wait_until(self, predicate: Callable[[], T | None], within: float = 5.0) -> T:
        """Wait until ``predicate()`` is truthy; returns its value.

        Re-checked after every request, gateway frame and CDN hit, and every 20 ms for state
        that lives in the bot rather than in the stand-in.
        """
        deadline = time.monotonic() + within
        while True:
            self._changed.clear()
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {within}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.02))

    # -- model builders -------------------------------------------------------------------------

    def add_guild(
        self,
        name: str,
        *,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        with_bot: bool = True,
    ) -> Guild:
        guild = Guild(self._ids.next(), self, name)
        guild.roles[guild.id] = Role(guild.id, guild, "@everyone", everyone_permissions, 0)
        guild.owner = guild._join(User(self._ids.next(), f"{name}-owner".lower()), [])
        self.guilds[guild.id] = guild
        if with_bot:
            bot_role = Role(self._ids.next(), guild, self.bot_user.name, self.bot_permissions, 1)
            bot_role.managed_by = self.bot_user
            guild.roles[bot_role.id] = bot_role
            guild.bot_member = guild._join(self.bot_user, [bot_role])
            self._dispatch("GUILD_CREATE", self._guild_create(guild), GUILDS)
        return guild

    def give_role(self, member: Member, role: Role) -> None:
        if role not in member.roles:
            member.roles.append(role)
            self._member_updated(member)

    def remove_role(self, member: Member, role: Role) -> None:
        member.roles.remove(role)
        self._member_updated(member)

    def set_role_permissions(self, role: Role, permissions: int) -> None:
        role.permissions = permissions
        event = {"guild_id": str(role.guild.id), "role": role.payload()}
        self._guild_dispatch(role.guild, "GUILD_ROLE_UPDATE", event, GUILDS)

    def _member_updated(self, member: Member) -> None:
        event = {"guild_id": str(member.guild.id), **member.payload()}
        self._guild_dispatch(member.guild, "GUILD_MEMBER_UPDATE", event, GUILD_MEMBERS)

    def _guild_dispatch(self, guild: Guild, event: str, data: dict[str, Any], intent: int) -> None:
        # Only guilds the bot is in produce events for it.
        if guild.bot_member is not None:
            self._dispatch(event, data, intent)

    def _bot_member(self, channel: Channel) -> Member:
        if channel.guild.bot_member is None:
            raise _error(MISSING_ACCESS)
        return channel.guild.bot_member

    # -- CDN ------------------------------------------------------------------------------------

    def cdn_url(self, attachment: Attachment, *, media: bool = False) -> str:
        """A signed URL, valid for ``cdn_ttl`` seconds of the stand-in's clock."""
        issued = int(self._wall())
        ex, is_ = f"{issued + int(self.cdn_ttl):x}", f"{issued:x}"
        query = f"ex={ex}&is={is_}&hm={self._cdn_signature(attachment.path, ex, is_)}&"
        return f"{self.base_url}{'/media' if media else ''}{attachment.path}?{query}"

    def _cdn_signature(self, path: str, ex: str, is_: str) -> str:
        return hmac.new(self._cdn_secret, f"{path}|{ex}|{is_}".encode(), hashlib.sha256).hexdigest()

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        path = request.path.removeprefix("/media")
        attachment = self._cdn_lookup(request, path)
        self.cdn_requests.append(CdnRecord(path, 200 if attachment else 404))
        self._touch()
        if attachment is None:
            # What Discord's CDN answers for unsigned, tampered or expired attachment URLs.
            return web.Response(status=404, text="This content is no longer available.")
        return web.Response(
            body=attachment.data,
            content_type=attachment.content_type or "application/octet-stream",
        )

    def _cdn_lookup(self, request: web.Request, path: str) -> Attachment | None:
        ex, is_, hm = (request.query.get(k, "") for k in ("ex", "is", "hm"))
        if not hmac.compare_digest(hm, self._cdn_signature(path, ex, is_)):
            return None
        if int(ex, 16) < self._wall():
            return None
        attachment = self._attachments.get(int(request.match_info["attachment_id"]))
        return attachment if attachment is not None and attachment.path == path else None

    # -- REST plumbing --------------------------------------------------------------------------

    def _rest_handler(
        self, endpoint: _Endpoint
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            record = RequestRecord(
                method=request.method,
                route=endpoint.route,
                path=self._redacted_path(endpoint.route, request.match_info),
                query=dict(request.query),
                started=time.monotonic(),
            )
            try:
                reply = await self._serve(endpoint, request, record)
            except DiscordError as error:
                reply = error.reply()
            return self._finish(record, reply)

        return handle

    async def _serve(
        self, endpoint: _Endpoint, request: web.Request, record: RequestRecord
    ) -> Reply:
        rules = self._take_rules(endpoint.method, endpoint.route)
        delay = sum(rule.delay for rule in rules)
        if delay:
            await asyncio.sleep(delay)
        fault = next((rule for rule in rules if rule.status is not None), None)
        if fault is not None and not fault.after_effect:
            record.injected = True
            return Reply(fault.status or 500, fault.body, dict(fault.headers))
        if endpoint.bot_auth and request.headers.get("Authorization") != f"Bot {self.token}":
            raise _error(UNAUTHORIZED)
        body = await self._read_body(request)
        record.body = body.payload
        record.files = [(f.filename, len(f.data)) for f in body.files]
        reply = await endpoint.handler(request, body)
        if fault is not None:
            record.injected = True
            return Reply(fault.status or 500, fault.body, dict(fault.headers))
        return reply

    def _finish(self, record: RequestRecord, reply: Reply) -> web.Response:
        if reply.status != 429:
            reply.headers.update(self._ratelimit_headers(record.route, remaining=49))
        record.status, record.response = reply.status, reply.body
        record.content_type = "application/json" if reply.body is not None else None
        record.duration = time.monotonic() - record.started
        self.requests.append(record)
        if not record.route:
            self.unknown_routes.append(record)
        log.debug("%s %s -> %s", record.method, record.path, record.status)
        self._touch()
        return reply.response()

    async def _unknown(self, request: web.Request) -> web.Response:
        path = request.path.removeprefix(API_PREFIX)
        record = RequestRecord(
            request.method, "", _redact_tokens(path), dict(request.query), time.monotonic()
        )
        return self._finish(record, _error(NOT_FOUND).reply())

    def _ratelimit_headers(
        self, route: str, *, remaining: int, reset_after: float = 1.0
    ) -> dict[str, str]:
        return {
            "X-RateLimit-Bucket": hashlib.sha256(route.encode()).hexdigest()[:16],
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        }

    @staticmethod
    def _redacted_path(route: str, params: Any) -> str:
        values = {k: (REDACTED if k.endswith("_token") else v) for k, v in params.items()}
        return route.format(**values)

    async def _read_body(self, request: web.Request) -> _Body:
        if request.content_type == "multipart/form-data":
            return await self._read_multipart(request)
        raw = await request.read()
        if not raw:
            return _Body()
        try:
            return _Body(json.loads(raw))
        except ValueError:
            raise _error(INVALID_JSON) from None

    async def _read_multipart(self, request: web.Request) -> _Body:
        body = _Body()
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue  # nested multipart: discord.py never sends one
            name, data = part.name or "", await part.read()
            if name == "payload_json":
                try:
                    body.payload = json.loads(data)
                except ValueError:
                    raise _error(INVALID_JSON) from None
            elif match := re.fullmatch(r"files\[(\d+)\]", name):
                filename = part.filename or f"file{match[1]}"
                body.files.append(_File(int(match[1]), filename, bytes(data)))
        return body

    # -- fault injection ------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        route: str,
        *,
        status: int,
        code: int = 0,
        message: str | None = None,
        times: int | None = 1,
        retry_after: float = 1.0,
        is_global: bool = False,
        after_effect: bool = False,
    ) -> FaultRule:
        """Answer the next ``times`` matching requests with ``status`` and a Discord error body."""
        self._check_route(method, route)
        body: dict[str, Any] = {"code": code, "message": message or f"{status}: Injected fault"}
        headers: dict[str, str] = {}
        if status == 429:
            body = {
                "code": code,
                "message": message or "You are being rate limited.",
                "retry_after": retry_after,
                "global": is_global,
            }
            headers = {
                **self._ratelimit_headers(route, remaining=0, reset_after=retry_after),
                "Retry-After": str(math.ceil(retry_after)),
                "X-RateLimit-Scope": "global" if is_global else "user",
                "Via": "1.1 google",  # discord.py treats a 429 without Via as a Cloudflare ban
            }
            if is_global:
                headers["X-RateLimit-Global"] = "true"
        rule = FaultRule(method, route, times, status, body, headers, after_effect=after_effect)
        self.faults.append(rule)
        return rule

    def delay(
        self, method: str, route: str, seconds: float, *, times: int | None = None
    ) -> FaultRule:
        self._check_route(method, route)
        rule = FaultRule(method, route, times, delay=seconds)
        self.faults.append(rule)
        return rule

    def _check_route(self, method: str, route: str) -> None:
        if not any(e.method == method and e.route == route for e in self.endpoints):
            raise ValueError(f"{method} {route} is not a route the stand-in implements")

    def _take_rules(self, method: str, route: str) -> list[FaultRule]:
        taken = []
        for rule in self.faults:
            if rule.method == method and rule.route == route and rule.remaining != 0:
                rule.hits += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                taken.append(rule)
        return taken

    # -- routes ---------------------------------------------------------------------------------

    def _endpoints(self) -> list[_Endpoint]:
        hook = "/webhooks/{webhook_id}/{webhook_token}"
        return [
            _Endpoint("GET", "/users/@me", self._get_me),
            _Endpoint("GET", "/oauth2/applications/@me", self._get_application),
            _Endpoint("GET", "/gateway/bot", self._get_gateway_bot),
            _Endpoint("GET", "/applications/{application_id}/commands", self._get_commands),
            _Endpoint("PUT", "/applications/{application_id}/commands", self._put_commands),
            _Endpoint(
                "GET",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                self._get_commands,
            ),
            _Endpoint(
                "PUT",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                self._put_commands,
            ),
            _Endpoint(
                "POST",
                "/interactions/{interaction_id}/{interaction_token}/callback",
                self._post_callback,
                bot_auth=False,
            ),
            # @original before {message_id}: aiohttp matches routes in registration order.
            _Endpoint("GET", hook + "/messages/@original", self._get_hook_message, bot_auth=False),
            _Endpoint(
                "PATCH", hook + "/messages/@original", self._patch_hook_message, bot_auth=False
            ),
            _Endpoint(
                "DELETE", hook + "/messages/@original", self._delete_hook_message, bot_auth=False
            ),
            _Endpoint("POST", hook, self._post_followup, bot_auth=False),
            _Endpoint(
                "GET", hook + "/messages/{message_id}", self._get_hook_message, bot_auth=False
            ),
            _Endpoint(
                "PATCH", hook + "/messages/{message_id}", self._patch_hook_message, bot_auth=False
            ),
            _Endpoint(
                "DELETE", hook + "/messages/{message_id}", self._delete_hook_message, bot_auth=False
            ),
            _Endpoint("GET", "/channels/{channel_id}", self._get_channel),
            _Endpoint("POST", "/channels/{channel_id}/messages", self._post_channel_message),
            _Endpoint(
                "GET", "/channels/{channel_id}/messages/{message_id}", self._get_channel_message
            ),
            _Endpoint(
                "PATCH", "/channels/{channel_id}/messages/{message_id}", self._patch_channel_message
            ),
            _Endpoint(
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}",
                self._delete_channel_message,
            ),
        ]

    async def _get_me(self, request: web.Request, body: _Body) -> Reply:
        return Reply(
            200,
            {**self.bot_user.payload(), "mfa_enabled": False, "locale": "en-US", "verified": True},
        )

    async def _get_application(self, request: web.Request, body: _Body) -> Reply:
        return Reply(
            200,
            {
                "id": str(self.application_id),
                "name": self.bot_user.name,
                "icon": None,
                "description": "",
                "type": None,
                "bot": self.bot_user.payload(),
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": hashlib.sha256(self._cdn_secret).hexdigest(),
                "flags": 0,
                "flags_new": "0",
                "redirect_uris": [],
                "rpc_origins": [],
                "interactions_endpoint_url": None,
                "role_connections_verification_url": None,
                "owner": self.app_owner.payload(),
                "approximate_guild_count": len(self.guilds),
                "approximate_user_install_count": 0,
                "approximate_user_authorization_count": 0,
                "explicit_content_filter": 0,
                "team": None,
                "eligible_oauth2_scopes": [],
            },
        )

    async def _get_gateway_bot(self, request: web.Request, body: _Body) -> Reply:
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return Reply(200, {"url": self.gateway_url, "shards": 1, "session_start_limit": limit})

    # -- application commands -------------------------------------------------------------------

    def _command_scope(self, request: web.Request) -> int | None:
        if request.match_info["application_id"] != str(self.application_id):
            raise _error(UNKNOWN_APPLICATION)
        if "guild_id" not in request.match_info:
            return None
        guild_id = int(request.match_info["guild_id"])
        if guild_id not in self.guilds:
            raise _error(MISSING_ACCESS)
        return guild_id

    async def _get_commands(self, request: web.Request, body: _Body) -> Reply:
        return Reply(200, self.commands.get(self._command_scope(request), []))

    async def _put_commands(self, request: web.Request, body: _Body) -> Reply:
        scope = self._command_scope(request)
        if not isinstance(body.payload, list):
            raise DiscordError(
                400,
                50035,
                "Invalid Form Body",
                {"_errors": [{"code": "BASE_TYPE_ARRAY", "message": "Must be an array."}]},
            )
        errors = _FormErrors()
        seen: set[tuple[str, int]] = set()
        for index, command in enumerate(body.payload):
            _check_command(errors, (index,), command, seen)
        errors.raise_if_any()
        self.commands[scope] = [self._stored_command(scope, c) for c in body.payload]
        return Reply(200, self.commands[scope])

    def _stored_command(self, scope: int | None, command: dict[str, Any]) -> dict[str, Any]:
        kind = command.get("type", 1)
        key = (scope, command["name"], kind)
        # Discord keeps a command's id across bulk overwrites as long as its name and type stay.
        command_id = self._command_ids.setdefault(key, self._ids.next())
        dmp = command.get("default_member_permissions")
        stored: dict[str, Any] = {
            "id": str(command_id),
            "application_id": str(self.application_id),
            "version": str(self._ids.next()),
            "default_member_permissions": None if dmp is None else str(dmp),
            "type": kind,
            "name": command["name"],
            "name_localizations": command.get("name_localizations"),
            "description": command.get("description", ""),
            "description_localizations": command.get("description_localizations"),
            "contexts": command.get("contexts"),
            "integration_types": command.get("integration_types") or [0],
            "nsfw": bool(command.get("nsfw", False)),
        }
        if scope is None:
            stored["dm_permission"] = command.get("dm_permission", True) is not False
        else:
            stored["guild_id"] = str(scope)
        if command.get("options"):
            stored["options"] = [_stored_option(o) for o in command["options"]]
        return stored

    def _find_command(self, guild: Guild, name: str, kind: int) -> dict[str, Any] | None:
        for scope in (guild.id, None):
            for command in self.commands.get(scope, []):
                if command["name"] == name and command["type"] == kind:
                    return command
        return None

    # -- gateway --------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        compress = request.query.get("compress") == "zlib-stream"
        connection = _Connection(ws, request.path, zlib.compressobj() if compress else None)
        self._connections.add(connection)
        writer = asyncio.create_task(self._gateway_writer(connection))
        try:
            self._send(
                connection, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}
            )
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._gateway_receive(connection, json.loads(msg.data))
        finally:
            session = self._session
            if session is not None and session.connection is connection:
                session.connection = None
            connection.queue.put_nowait(None)
            await writer
            self._connections.discard(connection)
            self._touch()
        return ws

    async def _gateway_writer(self, connection: _Connection) -> None:
        while (frame := await connection.queue.get()) is not None:
            text = json.dumps(frame)
            try:
                if connection.compressor is None:
                    await connection.ws.send_str(text)
                else:
                    c = connection.compressor
                    await connection.ws.send_bytes(
                        c.compress(text.encode()) + c.flush(zlib.Z_SYNC_FLUSH)
                    )
            except ConnectionError:
                return
            self._frame_written(frame)

    def _frame_written(self, frame: dict[str, Any]) -> None:
        """Called once a gateway frame is on the socket (a hook for benchmarks' timestamps)."""

    def _send(self, connection: _Connection, frame: dict[str, Any]) -> None:
        self.gateway_log.append(GatewayRecord("sent", frame["op"], frame.get("t"), frame.get("s")))
        connection.send(frame)

    async def _gateway_receive(self, connection: _Connection, frame: dict[str, Any]) -> None:
        op, data = frame.get("op"), frame.get("d")
        self.gateway_log.append(GatewayRecord("received", op if isinstance(op, int) else -1))
        self._touch()
        if op == 1:
            self._send(connection, {"op": 11})
        elif op == 2:
            await self._identify(connection, data or {})
        elif op == 6:
            self._resume(connection, data or {})
        elif connection.session is None:
            await connection.ws.close(code=4003, message=b"Not authenticated.")
        elif op == 3:
            pass  # presence updates change nothing the stand-in models
        elif op == 8:
            self._send_member_chunk(connection, data or {})
        else:
            await connection.ws.close(code=4001, message=b"Unknown opcode.")

    async def _identify(self, connection: _Connection, data: dict[str, Any]) -> None:
        intents = data.get("intents")
        if data.get("token") != self.token:
            await connection.ws.close(code=4004, message=b"Authentication failed.")
            return
        if not isinstance(intents, int):
            await connection.ws.close(code=4013, message=b"Invalid intent(s).")
            return
        if intents & ALL_PRIVILEGED & ~self.privileged_intents:
            await connection.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        props = data.get("properties", {})
        self.identifies.append(IdentifyRecord(intents, data.get("shard"), props, connection.path))
        session = _Session(secrets.token_hex(16), intents, data.get("shard"))
        session.connection, connection.session = connection, session
        self._session = session
        self._dispatch("READY", self._ready(session))
        for guild in self.guilds.values():
            if guild.bot_member is not None:
                self._dispatch("GUILD_CREATE", self._guild_create(guild))

    def _ready(self, session: _Session) -> dict[str, Any]:
        ready: dict[str, Any] = {
            "v": 10,
            "user": {**self.bot_user.payload(), "verified": True, "mfa_enabled": False},
            "guilds": [
                {"id": str(g.id), "unavailable": True} for g in self.guilds.values() if g.bot_member
            ],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway/resume",
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "auth": {},
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        return ready

    def _guild_create(self, guild: Guild) -> dict[str, Any]:
        # Without GUILD_MEMBERS, Discord only sends the bot itself in GUILD_CREATE.
        intents = self._session.intents if self._session else 0
        members = guild.members.values() if intents & GUILD_MEMBERS else [guild.bot_member]
        return guild.payload(members=[m for m in members if m is not None])

    def _resume(self, connection: _Connection, data: dict[str, Any]) -> None:
        session, seq = self._session, data.get("seq") or 0
        ok = (
            session is not None
            and session.resumable
            and data.get("session_id") == session.id
            and data.get("token") == self.token
            and (not session.buffer or session.buffer[0]["s"] <= seq + 1)
        )
        record = ResumeRecord(data.get("session_id"), data.get("seq"), ok, 0, connection.path)
        self.resumes.append(record)
        if not ok or session is None:
            self._send(connection, {"op": 9, "d": False})
            return
        session.connection, connection.session = connection, session
        missed = [f for f in session.buffer if f["s"] > seq]
        record.replayed = len(missed)
        for frame in missed:
            self._send(connection, frame)
        self._dispatch("RESUMED", {})

    def _send_member_chunk(self, connection: _Connection, data: dict[str, Any]) -> None:
        guild = self.guilds.get(int(data.get("guild_id", 0)))
        if guild is None:
            return
        wanted = {int(u) for u in data.get("user_ids") or []}
        query = (data.get("query") or "").lower()
        members = [
            m
            for m in guild.members.values()
            if (not wanted or m.id in wanted) and m.name.lower().startswith(query)
        ]
        chunk = {
            "guild_id": str(guild.id),
            "members": [m.payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if "nonce" in data:
            chunk["nonce"] = data["nonce"]
        self._dispatch("GUILD_MEMBERS_CHUNK", chunk)

    def _dispatch(self, event: str, data: dict[str, Any], intent: int | None = None) -> None:
        """Queue a dispatch on the session; kept for replay if the socket is down."""
        session = self._session
        if session is None or (intent is not None and not session.intents & intent):
            return
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.buffer.append(frame)
        if session.connection is not None:
            self._send(session.connection, frame)
        else:
            self.gateway_log.append(GatewayRecord("buffered", 0, event, session.seq))

    async def drop_gateway(self, *, resumable: bool = True, code: int = 4000) -> None:
        """Close the bot's websocket; ``resumable=False`` makes its RESUME fail (op 9)."""
        session = self._session
        if session is None or session.connection is None:
            raise RuntimeError("no gateway connection to drop")
        connection, session.connection = session.connection, None  # buffer from now on
        session.resumable = resumable
        await connection.ws.close(code=code, message=b"dropped by test")

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.connection is not None

    @property
    def intents(self) -> int | None:
        return self._session.intents if self._session else None

    # -- acting as members ----------------------------------------------------------------------

    async def slash(
        self,
        member: Member,
        channel: Channel,
        command: str,
        /,
        *,
        raw: bool = False,
        **options: Any,
    ) -> Interaction:
        """A member runs ``/command [sub ...]`` with ``options`` (checked like Discord's client)."""
        names = command.split()
        synced = self._find_command(channel.guild, names[0], 1)
        if synced is None and not raw:
            raise CommandRefused(f"/{names[0]} was never synced")
        if synced is not None and not raw:
            self._check_visible(member, channel, synced)
        builder = _OptionBuilder(self, channel, member, raw)
        wire = builder.build(synced, names, options)
        data: dict[str, Any] = {
            "id": synced["id"] if synced else str(self._ids.next()),
            "name": names[0],
            "type": 1,
        }
        if wire:
            data["options"] = wire
        if builder.resolved:
            data["resolved"] = builder.resolved
        if synced and "guild_id" in synced:
            data["guild_id"] = synced["guild_id"]
        return self._interact(2, command, member, channel, data)

    async def message_command(
        self, member: Member, message: Message, name: str, /, *, raw: bool = False
    ) -> Interaction:
        """A member runs the message context-menu command ``name`` on ``message``."""
        channel = message.channel
        synced = self._find_command(channel.guild, name, 3)
        if synced is None and not raw:
            raise CommandRefused(f"message command {name!r} was never synced")
        if synced is not None and not raw:
            self._check_visible(member, channel, synced)
        data = {
            "id": synced["id"] if synced else str(self._ids.next()),
            "name": name,
            "type": 3,
            "target_id": str(message.id),
            "resolved": {"messages": {str(message.id): self._message_payload(message)}},
        }
        return self._interact(2, name, member, channel, data)

    async def click(self, member: Member, message: Message, custom_id: str) -> Interaction:
        """A member clicks the button ``custom_id`` on a message the bot posted."""
        if message.author is not self.bot_user or message.deleted:
            raise CommandRefused("only buttons on the bot's live messages can be clicked")
        button = next(
            (c for c in _walk_components(message.components) if c.get("custom_id") == custom_id),
            None,
        )
        if button is None or button.get("type") != 2:
            raise CommandRefused(f"message {message.id} has no button {custom_id!r}")
        if button.get("disabled"):
            raise CommandRefused(f"button {custom_id!r} is disabled")
        data = {"custom_id": custom_id, "component_type": 2, "id": button["id"]}
        return self._interact(3, custom_id, member, message.channel, data, message=message)

    async def submit_modal(
        self, member: Member, opened_on: Interaction, values: dict[str, str], *, raw: bool = False
    ) -> Interaction:
        """Submit the modal the bot opened (type 9) in answer to ``opened_on``."""
        modal = opened_on.modal
        if modal is None:
            raise CommandRefused("the bot opened no modal on that interaction")
        components = _modal_submission(modal, values, raw)
        data = {"custom_id": modal["custom_id"], "components": components}
        return self._interact(
            5,
            modal["custom_id"],
            member,
            opened_on.channel,
            data,
            message=opened_on.message,
            opened_by=opened_on,
        )

    async def redeliver(self, interaction: Interaction) -> Interaction:
        """Deliver the same INTERACTION_CREATE (same id and token) once more."""
        interaction.deliveries += 1
        self._dispatch("INTERACTION_CREATE", self._interaction_payload(interaction))
        return interaction

    async def post_message(
        self,
        member: Member,
        channel: Channel,
        content: str = "",
        *,
        files: Iterable[Upload | tuple[str, bytes]] = (),
    ) -> Message:
        """A member's own message (e.g. an image to run a context menu on)."""
        message = Message(
            self._ids.next(), channel, member.user, content, created_at=self._timestamp()
        )
        message.attachments = [self._store_upload(channel, _as_upload(f)) for f in files]
        self._add_message(message)
        return message

    def _check_visible(self, member: Member, channel: Channel, command: dict[str, Any]) -> None:
        needed = command.get("default_member_permissions")
        perms = member.permissions_in(channel)
        if (
            needed is not None
            and (perms & int(needed)) != int(needed)
            and not perms & ADMINISTRATOR
        ):
            raise CommandRefused(
                f"{command['name']} is hidden from {member.name} by default_member_permissions"
            )

    def _interact(
        self,
        kind: int,
        name: str,
        member: Member,
        channel: Channel,
        data: dict[str, Any],
        *,
        message: Message | None = None,
        opened_by: Interaction | None = None,
    ) -> Interaction:
        if self._session is None:
            raise RuntimeError("no gateway session: is the bot connected?")
        bot = self._bot_member(channel)
        it = Interaction(
            id=self._ids.next(),
            type=kind,
            name=name,
            member=member,
            channel=channel,
            data=data,
            member_permissions=member.permissions_in(channel),
            app_permissions=bot.permissions_in(channel),
            message=message,
            opened_by=opened_by,
            created_at=self.now(),
            sent_at=time.monotonic(),
        )
        token = secrets.token_urlsafe(64)
        self._tokens[token], self._token_of[it.id] = it, token
        self.interactions.append(it)
        self._dispatch("INTERACTION_CREATE", self._interaction_payload(it))
        return it

    def _interaction_payload(self, it: Interaction) -> dict[str, Any]:
        guild = it.channel.guild
        payload: dict[str, Any] = {
            "id": str(it.id),
            "application_id": str(self.application_id),
            "type": it.type,
            "data": it.data,
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "channel_id": str(it.channel.id),
            "channel": it.channel.payload(for_member=it.member),
            "member": {**it.member.payload(), "permissions": str(it.member_permissions)},
            "token": self._token_of[it.id],
            "version": 1,
            "app_permissions": str(it.app_permissions),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": self.upload_limit,
        }
        if it.message is not None:
            payload["message"] = self._message_payload(it.message)
        return payload

    # -- interaction callbacks and webhooks -----------------------------------------------------

    async def _post_callback(self, request: web.Request, body: _Body) -> Reply:
        it = self._tokens.get(request.match_info["interaction_token"])
        if it is None or str(it.id) != request.match_info["interaction_id"]:
            raise _error(UNKNOWN_INTERACTION)
        payload = body.payload if isinstance(body.payload, dict) else {}
        kind = payload.get("type")
        record = CallbackRecord(
            it,
            kind if isinstance(kind, int) else None,
            0,
            None,
            time.monotonic() - it.sent_at,
            payload.get("data"),
        )
        self.callbacks.append(record)
        try:
            reply = self._acknowledge(it, kind, payload.get("data") or {}, body.files, request)
        except DiscordError as error:
            record.status, record.code = error.status, error.code
            raise
        record.status = reply.status
        return reply

    def _acknowledge(
        self,
        it: Interaction,
        kind: Any,
        data: dict[str, Any],
        files: list[_File],
        request: web.Request,
    ) -> Reply:
        if it.acknowledged:
            raise _error(ALREADY_ACKNOWLEDGED)
        if self.now() - it.created_at > self.ack_deadline:
            raise _error(UNKNOWN_INTERACTION)
        allowed = {4, 5, 9} | ({6, 7} if it.message is not None else set())
        if it.type == 5:
            allowed.discard(9)
        if kind not in allowed:
            errors = _FormErrors()
            errors.add(
                ("type",),
                "INTERACTION_CALLBACK_TYPE_INVALID",
                f"Callback type {kind} is not valid for this interaction.",
            )
            errors.raise_if_any()
        if kind == 4:
            it.original = self._create_message(
                it.channel, data, files, interaction=it, allow_flags=EPHEMERAL
            )
        elif kind == 5:
            it.original = self._create_loading(it, data)
        elif kind in (6, 7):
            it.original = it.message
            if kind == 7 and it.message is not None:
                self._edit_message(it.message, data, files)
        else:
            it.modal = _checked_modal(data)
        it.response_type, it.acked_at = kind, time.monotonic()
        if request.query.get("with_response", "").lower() not in ("1", "true"):
            return Reply(204)
        return Reply(200, self._callback_response(it, kind))

    def _callback_response(self, it: Interaction, kind: int) -> dict[str, Any]:
        info: dict[str, Any] = {"id": str(it.id), "type": it.type}
        if it.original is not None and kind != 9:
            info["response_message_id"] = str(it.original.id)
            info["response_message_loading"] = it.original.loading
            info["response_message_ephemeral"] = it.original.ephemeral
        response: dict[str, Any] = {"interaction": info}
        # The spec describes a resource only for messages created (4) or updated (7).
        if kind in (4, 7) and it.original is not None:
            response["resource"] = {"type": kind, "message": self._message_payload(it.original)}
        return response

    def _create_loading(self, it: Interaction, data: dict[str, Any]) -> Message:
        flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
        message = Message(
            self._ids.next(),
            it.channel,
            self.bot_user,
            flags=flags,
            interaction=it,
            type=_message_type(it, None),
            created_at=self._timestamp(),
        )
        self._add_message(message)
        return message

    def _hook_interaction(self, request: web.Request) -> Interaction:
        it = self._tokens.get(request.match_info["webhook_token"])
        if it is None or self.now() - it.created_at > self.token_lifetime:
            raise _error(INVALID_WEBHOOK_TOKEN)
        if request.match_info["webhook_id"] != str(self.application_id) or not it.acknowledged:
            raise _error(UNKNOWN_WEBHOOK)
        return it

    def _hook_message(self, request: web.Request) -> tuple[Interaction, Message]:
        it = self._hook_interaction(request)
        wanted = request.match_info.get("message_id")
        if wanted is None:
            message = it.original
        else:
            candidates = [m for m in (it.original, *it.followups) if m is not None]
            message = next((m for m in candidates if str(m.id) == wanted), None)
        if message is None or message.deleted:
            raise _error(UNKNOWN_MESSAGE)
        return it, message

    async def _get_hook_message(self, request: web.Request, body: _Body) -> Reply:
        _, message = self._hook_message(request)
        return Reply(200, self._message_payload(message))

    async def _patch_hook_message(self, request: web.Request, body: _Body) -> Reply:
        _, message = self._hook_message(request)
        self._edit_message(message, _object(body.payload), body.files)
        return Reply(200, self._message_payload(message))

    async def _delete_hook_message(self, request: web.Request, body: _Body) -> Reply:
        _, message = self._hook_message(request)
        self._delete_message(message)
        return Reply(204)

    async def _post_followup(self, request: web.Request, body: _Body) -> Reply:
        it = self._hook_interaction(request)
        payload = _object(body.payload)
        original = it.original
        if (
            it.response_type == 5
            and original is not None
            and original.loading
            and not original.deleted
        ):
            # Documented: the first follow-up after a deferred response edits the loading message.
            self._edit_message(original, payload, body.files)
            message = original
        else:
            message = self._create_message(
                it.channel, payload, body.files, interaction=it, allow_flags=EPHEMERAL
            )
            it.followups.append(message)
        if request.query.get("wait", "").lower() not in ("1", "true"):
            return Reply(204)
        return Reply(200, self._message_payload(message))

    # -- channel messages -----------------------------------------------------------------------

    def _channel(self, request: web.Request, needed: int = VIEW_CHANNEL) -> Channel:
        channel_id = int(request.match_info["channel_id"])
        channel = next(
            (g.channels[channel_id] for g in self.guilds.values() if channel_id in g.channels), None
        )
        if channel is None:
            raise _error(UNKNOWN_CHANNEL)
        perms = self._bot_member(channel).permissions_in(channel)
        if not perms & VIEW_CHANNEL:
            raise _error(MISSING_ACCESS)
        if perms & needed != needed:
            raise _error(MISSING_PERMISSIONS)
        return channel

    def _channel_message(self, request: web.Request, needed: int = VIEW_CHANNEL) -> Message:
        channel = self._channel(request, needed)
        message = self._messages_by_id.get(int(request.match_info["message_id"]))
        # Ephemeral messages do not exist as far as channel routes are concerned.
        if (
            message is None
            or message.channel is not channel
            or message.deleted
            or message.ephemeral
        ):
            raise _error(UNKNOWN_MESSAGE)
        return message

    async def _get_channel(self, request: web.Request, body: _Body) -> Reply:
        return Reply(200, self._channel(request).payload())

    async def _post_channel_message(self, request: web.Request, body: _Body) -> Reply:
        needed = VIEW_CHANNEL | SEND_MESSAGES | (ATTACH_FILES if body.files else 0)
        channel = self._channel(request, needed)
        payload = _object(body.payload)
        duplicate = self._nonce_duplicate(channel, payload)
        if duplicate is not None:
            return Reply(200, self._message_payload(duplicate))
        message = self._create_message(channel, payload, body.files)
        return Reply(200, self._message_payload(message))

    async def _get_channel_message(self, request: web.Request, body: _Body) -> Reply:
        message = self._channel_message(request, VIEW_CHANNEL | READ_MESSAGE_HISTORY)
        return Reply(200, self._message_payload(message))

    async def _patch_channel_message(self, request: web.Request, body: _Body) -> Reply:
        message = self._channel_message(request)
        if message.author is not self.bot_user:
            raise _error(NOT_AUTHOR)
        self._edit_message(message, _object(body.payload), body.files)
        return Reply(200, self._message_payload(message))

    async def _delete_channel_message(self, request: web.Request, body: _Body) -> Reply:
        message = self._channel_message(request)
        perms = self._bot_member(message.channel).permissions_in(message.channel)
        if message.author is not self.bot_user and not perms & MANAGE_MESSAGES:
            raise _error(MISSING_PERMISSIONS)
        self._delete_message(message)
        return Reply(204)

    def _nonce_duplicate(self, channel: Channel, payload: dict[str, Any]) -> Message | None:
        nonce = payload.get("nonce")
        if not payload.get("enforce_nonce") or nonce is None:
            return None
        horizon = self._wall() - NONCE_WINDOW
        for message in reversed(self.messages.get(channel.id, [])):
            if datetime.fromisoformat(message.created_at).timestamp() < horizon:
                break
            if message.nonce == nonce and message.author is self.bot_user:
                return message
        return None

    # -- message bodies -------------------------------------------------------------------------

    def _create_message(
        self,
        channel: Channel,
        payload: dict[str, Any],
        files: list[_File],
        *,
        interaction: Interaction | None = None,
        allow_flags: int = 0,
    ) -> Message:
        self._check_files(files)
        errors = _FormErrors()
        _check_message_body(errors, payload)
        errors.raise_if_any()
        flags = int(payload.get("flags") or 0) & (
            SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | allow_flags
        )
        reference = self._reference(channel, payload.get("message_reference"))
        message = Message(
            self._ids.next(),
            channel,
            self.bot_user,
            flags=flags,
            interaction=interaction,
            type=_message_type(interaction, reference),
            tts=bool(payload.get("tts")),
            nonce=payload.get("nonce"),
            reference=reference,
            created_at=self._timestamp(),
        )
        self._apply_body(message, payload, files, creating=True)
        self._add_message(message)
        return message

    def _edit_message(self, message: Message, payload: dict[str, Any], files: list[_File]) -> None:
        self._check_files(files)
        errors = _FormErrors()
        _check_message_body(errors, payload)
        errors.raise_if_any()
        before = self._message_payload(message)
        self._apply_body(message, payload, files, creating=False)
        message.history.append(before)
        if "flags" in payload:
            keep = message.flags & ~SUPPRESS_EMBEDS
            message.flags = keep | (int(payload.get("flags") or 0) & SUPPRESS_EMBEDS)
        message.flags &= ~LOADING
        message.edited_at = self._timestamp()
        if not message.ephemeral:
            self._dispatch("MESSAGE_UPDATE", self._message_event(message), GUILD_MESSAGES)
        self._touch()

    def _check_files(self, files: list[_File]) -> None:
        if any(len(f.data) > self.upload_limit for f in files):
            raise _error(ENTITY_TOO_LARGE)
        if len(files) > 10:
            raise _error(TOO_MANY_ATTACHMENTS)

    def _apply_body(
        self, message: Message, payload: dict[str, Any], files: list[_File], *, creating: bool
    ) -> None:
        attachments = self._attachments_after(message, payload, files, creating=creating)
        if len(attachments) > 10:
            raise _error(TOO_MANY_ATTACHMENTS)
        content = payload.get("content") if "content" in payload else message.content
        embeds = payload.get("embeds") if "embeds" in payload else None
        components = payload.get("components") if "components" in payload else None
        has_embeds = bool(embeds) if embeds is not None else bool(message.embeds)
        has_components = bool(components) if components is not None else bool(message.components)
        if not (content or has_embeds or attachments or has_components):
            raise _error(EMPTY_MESSAGE)
        message.content = content or ""
        message.attachments = attachments
        if embeds is not None:
            message.embeds = [self._stored_embed(e, attachments) for e in embeds]
        if components is not None:
            message.components = _stored_components(components)
        if "allowed_mentions" in payload or creating:
            message.allowed_mentions = payload.get("allowed_mentions")

    def _attachments_after(
        self, message: Message, payload: dict[str, Any], files: list[_File], *, creating: bool
    ) -> list[Attachment]:
        listed = payload.get("attachments")
        meta = {str(a.get("id")): a for a in listed or [] if isinstance(a, dict)}
        if listed is None or creating:
            kept = list(message.attachments)
        else:
            kept = [a for a in message.attachments if str(a.id) in meta]
        known = {str(a.id) for a in message.attachments} | {str(f.index) for f in files}
        unknown = [key for key in meta if key not in known]
        if unknown:
            errors = _FormErrors()
            errors.add(
                ("attachments",), "ATTACHMENT_NOT_FOUND", f"Unknown attachment ids: {unknown}"
            )
            errors.raise_if_any()
        new = []
        for f in files:
            info = meta.get(str(f.index), {})
            upload = Upload(
                info.get("filename") or f.filename, f.data, description=info.get("description")
            )
            new.append(self._store_upload(message.channel, upload, ephemeral=message.ephemeral))
        return kept + new

    def _store_upload(
        self, channel: Channel, upload: Upload, *, ephemeral: bool = False
    ) -> Attachment:
        width = height = None
        content_type = upload.content_type or mimetypes.guess_type(upload.filename)[0]
        if content_type and content_type.startswith("image/"):
            # Not decodable: Discord then simply has no dimensions for the file.
            with contextlib.suppress(Exception), Image.open(io.BytesIO(upload.data)) as image:
                width, height = image.size
        attachment = Attachment(
            self._ids.next(),
            channel.id,
            re.sub(r"[^\w.-]", "_", upload.filename),
            upload.data,
            len(upload.data) if upload.size is None else upload.size,
            content_type,
            width,
            height,
            ephemeral,
            upload.description,
        )
        self._attachments[attachment.id] = attachment
        return attachment

    def _stored_embed(self, embed: dict[str, Any], attachments: list[Attachment]) -> dict[str, Any]:
        stored = {k: v for k, v in embed.items() if v is not None}
        stored["type"] = stored.get("type") or "rich"
        if "fields" in stored:
            stored["fields"] = [
                {"name": f["name"], "value": f["value"], "inline": bool(f.get("inline"))}
                for f in stored["fields"]
            ]
        by_name = {a.filename: a for a in attachments}
        for key in ("image", "thumbnail"):
            url = (stored.get(key) or {}).get("url", "")
            if url.startswith("attachment://") and url[13:] in by_name:
                found = by_name[url[13:]]
                stored[key] = {
                    "url": self.cdn_url(found),
                    "proxy_url": self.cdn_url(found, media=True),
                }
                if found.width is not None:
                    stored[key] |= {"width": found.width, "height": found.height}
        return stored

    def _reference(self, channel: Channel, reference: Any) -> Message | None:
        if not isinstance(reference, dict):
            return None
        target = self._messages_by_id.get(int(reference.get("message_id") or 0))
        if target is None or target.channel is not channel or target.deleted:
            if reference.get("fail_if_not_exists", True):
                errors = _FormErrors()
                errors.add(
                    ("message_reference",), "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
                errors.raise_if_any()
            return None
        return target

    def _add_message(self, message: Message) -> None:
        self.messages.setdefault(message.channel.id, []).append(message)
        self._messages_by_id[message.id] = message
        if not message.ephemeral:
            self._dispatch("MESSAGE_CREATE", self._message_event(message), GUILD_MESSAGES)
        self._touch()

    def _delete_message(self, message: Message) -> None:
        message.deleted = True
        if not message.ephemeral:
            event = {
                "id": str(message.id),
                "channel_id": str(message.channel.id),
                "guild_id": str(message.channel.guild.id),
            }
            self._dispatch("MESSAGE_DELETE", event, GUILD_MESSAGES)
        self._touch()

    # -- payloads -------------------------------------------------------------------------------

    def _message_payload(self, message: Message) -> dict[str, Any]:
        pings = self.pings(message)
        guild = message.channel.guild
        data: dict[str, Any] = {
            "id": str(message.id),
            "channel_id": str(message.channel.id),
            "type": message.type,
            "author": message.author.payload(),
            "content": message.content,
            "timestamp": message.created_at,
            "edited_timestamp": message.edited_at,
            "tts": message.tts,
            "mention_everyone": pings.everyone,
            "mentions": [
                guild.members[u].user.payload() for u in sorted(pings.users) if u in guild.members
            ],
            "mention_roles": [str(r) for r in sorted(pings.roles)],
            "attachments": [self._attachment_payload(a) for a in message.attachments],
            "embeds": message.embeds,
            "components": message.components,
            "flags": message.flags,
            "pinned": False,
        }
        if message.nonce is not None:
            data["nonce"] = message.nonce
        if message.reference is not None:
            data["message_reference"] = {
                "type": 0,
                "message_id": str(message.reference.id),
                "channel_id": str(message.channel.id),
                "guild_id": str(guild.id),
            }
        if message.interaction is not None:
            data |= self._interaction_fields(message)
        return data

    def _interaction_fields(self, message: Message) -> dict[str, Any]:
        it = message.interaction
        assert it is not None
        data: dict[str, Any] = {
            "webhook_id": str(self.application_id),
            "application_id": str(self.application_id),
            "interaction_metadata": self._interaction_metadata(it, message),
        }
        if it.type == 2:
            data["interaction"] = {
                "id": str(it.id),
                "type": it.type,
                "name": it.name,
                "user": it.member.user.payload(),
            }
        return data

    def _interaction_metadata(
        self, it: Interaction, message: Message | None = None
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "id": str(it.id),
            "type": it.type,
            "user": it.member.user.payload(),
            "authorizing_integration_owners": {"0": str(it.channel.guild.id)},
        }
        if message is not None and it.original is not None and message is not it.original:
            meta["original_response_message_id"] = str(it.original.id)
        if it.type == 2 and "target_id" in it.data:
            meta["target_message_id"] = it.data["target_id"]
        if it.type == 3 and it.message is not None:
            meta["interacted_message_id"] = str(it.message.id)
        if it.type == 5 and it.opened_by is not None:
            meta["triggering_interaction_metadata"] = self._interaction_metadata(it.opened_by)
        return meta

    def _attachment_payload(self, attachment: Attachment) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(attachment.id),
            "filename": attachment.filename,
            "size": attachment.size,
            "url": self.cdn_url(attachment),
            "proxy_url": self.cdn_url(attachment, media=True),
        }
        if attachment.content_type:
            data["content_type"] = attachment.content_type
        if attachment.width is not None:
            data |= {"width": attachment.width, "height": attachment.height}
        if attachment.ephemeral:
            data["ephemeral"] = True
        if attachment.description is not None:
            data["description"] = attachment.description
        return data

    def _message_event(self, message: Message) -> dict[str, Any]:
        data = self._message_payload(message)
        guild = message.channel.guild
        data["guild_id"] = str(guild.id)
        member = guild.members.get(message.author.id)
        if member is not None:
            data["member"] = member.payload(with_user=False)
        intents = self._session.intents if self._session else 0
        mentions_bot = self.bot_user.id in self.pings(message).users
        if (
            not intents & MESSAGE_CONTENT
            and message.author is not self.bot_user
            and not mentions_bot
        ):
            # Without the MESSAGE_CONTENT intent Discord blanks these fields in gateway events.
            data |= {"content": "", "embeds": [], "attachments": [], "components": []}
        return data

    # -- mentions -------------------------------------------------------------------------------

    def pings(self, message: Message) -> Pings:
        """Who this message would notify, under Discord's allowed_mentions rules."""
        guild, am = message.channel.guild, message.allowed_mentions
        if am is None:
            parse, users, roles, replied = {"users", "roles", "everyone"}, set(), set(), True
        else:
            parse = set(am.get("parse") or [])
            users = {int(u) for u in am.get("users") or []}
            roles = {int(r) for r in am.get("roles") or []}
            replied = bool(am.get("replied_user", False))
        author = guild.members.get(message.author.id)
        can_mention_all = bool(author and author.permissions_in(message.channel) & MENTION_EVERYONE)
        content = message.content
        pinged_users = {
            int(u)
            for u in re.findall(r"<@!?(\d+)>", content)
            if "users" in parse or int(u) in users
        }
        pinged_roles = {
            int(r)
            for r in re.findall(r"<@&(\d+)>", content)
            if int(r) in guild.roles
            and ("roles" in parse or int(r) in roles)
            and (guild.roles[int(r)].mentionable or can_mention_all)
        }
        everyone = (
            bool(re.search(r"@(everyone|here)\b", content))
            and "everyone" in parse
            and can_mention_all
        )
        if message.reference is not None and replied:
            pinged_users.add(message.reference.author.id)
        return Pings(frozenset(pinged_users), frozenset(pinged_roles), everyone)


# ---------------------------------------------------------------------------------------------
# Helpers: validation and normalisation


def _object(payload: Any) -> dict[str, Any]:
    return payload if isinstance(payload, dict) else {}


def _as_upload(value: Upload | tuple[str, bytes]) -> Upload:
    return value if isinstance(value, Upload) else Upload(value[0], value[1])


def _redact_tokens(path: str) -> str:
    return re.sub(r"/(interactions|webhooks)/(\d+)/[^/?]+", rf"/\1/\2/{REDACTED}", path)


def _message_type(it: Interaction | None, reference: Message | None) -> int:
    """REPLY (19) for replies; CHAT_INPUT_COMMAND (20) / CONTEXT_MENU_COMMAND (23) for command
    responses; DEFAULT (0) otherwise."""
    if it is None:
        return 0 if reference is None else 19
    if it.type != 2:
        return 0
    return 23 if it.data.get("type") == 3 else 20


def _walk_components(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for component in components:
        yield component
        yield from _walk_components(component.get("components") or [])
        if isinstance(component.get("component"), dict):
            yield component["component"]


def _check_message_body(errors: _FormErrors, payload: dict[str, Any]) -> None:
    content = payload.get("content")
    if content is not None and not isinstance(content, str):
        errors.add(("content",), "BASE_TYPE_STRING", "Must be a string.")
    errors.max_length(("content",), content, 2000)
    embeds = payload.get("embeds") or []
    errors.max_length(("embeds",), embeds, 10)
    total = sum(_check_embed(errors, ("embeds", i), e) for i, e in enumerate(embeds[:10]))
    if total > 6000:
        errors.add(
            ("embeds",), "MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000"
        )
    _check_components(errors, payload.get("components") or [], int(payload.get("flags") or 0))
    _check_allowed_mentions(errors, payload.get("allowed_mentions"))
    for index, attachment in enumerate(payload.get("attachments") or []):
        errors.max_length(
            ("attachments", index, "description"), (attachment or {}).get("description"), 1024
        )


def _check_embed(errors: _FormErrors, path: tuple[str | int, ...], embed: dict[str, Any]) -> int:
    """Checks one embed's limits; returns its character count toward the 6000 total."""
    title, description = embed.get("title") or "", embed.get("description") or ""
    footer = (embed.get("footer") or {}).get("text") or ""
    author = (embed.get("author") or {}).get("name") or ""
    errors.max_length((*path, "title"), title, 256)
    errors.max_length((*path, "description"), description, 4096)
    errors.max_length((*path, "footer", "text"), footer, 2048)
    errors.max_length((*path, "author", "name"), author, 256)
    fields = embed.get("fields") or []
    errors.max_length((*path, "fields"), fields, 25)
    size = len(title) + len(description) + len(footer) + len(author)
    for index, f in enumerate(fields):
        for key, limit in (("name", 256), ("value", 1024)):
            if not f.get(key):
                errors.add(
                    (*path, "fields", index, key), "BASE_TYPE_REQUIRED", "This field is required"
                )
            errors.max_length((*path, "fields", index, key), f.get(key), limit)
            size += len(f.get(key) or "")
    return size


def _check_components(errors: _FormErrors, rows: list[dict[str, Any]], flags: int) -> None:
    if flags & IS_COMPONENTS_V2:
        errors.add(
            ("flags",), "STANDIN_UNSUPPORTED", "Components V2 are not modelled by the stand-in."
        )
        return
    errors.max_length(("components",), rows, 5)
    seen: set[str] = set()
    for r, row in enumerate(rows):
        children = row.get("components") or []
        if row.get("type") != 1:
            errors.add(
                ("components", r, "type"),
                "UNION_TYPE_CHOICES",
                "Top-level components must be action rows (type 1).",
            )
        if not 1 <= len(children) <= 5:
            errors.add(
                ("components", r, "components"),
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 5 in length.",
            )
        for c, button in enumerate(children):
            _check_button(errors, ("components", r, "components", c), button, seen)


def _check_button(
    errors: _FormErrors, path: tuple[str | int, ...], button: dict[str, Any], seen: set[str]
) -> None:
    if button.get("type") != 2:
        errors.add(
            (*path, "type"), "STANDIN_UNSUPPORTED", "Only buttons are modelled by the stand-in."
        )
        return
    custom_id, url, style = button.get("custom_id"), button.get("url"), button.get("style")
    errors.max_length((*path, "label"), button.get("label"), 80)
    if style not in range(1, 7):
        errors.add(
            (*path, "style"), "BASE_TYPE_CHOICES", "Value must be one of (1, 2, 3, 4, 5, 6)."
        )
    elif style == 5 and (not url or custom_id):
        errors.add(
            (*path, "url"),
            "BUTTON_COMPONENT_URL_REQUIRED",
            "A link button needs a url and no custom_id.",
        )
    elif style != 5 and not custom_id:
        errors.add(
            (*path, "custom_id"), "BUTTON_COMPONENT_CUSTOM_ID_REQUIRED", "A custom id is required"
        )
    if isinstance(custom_id, str):
        errors.max_length((*path, "custom_id"), custom_id, 100)
        if custom_id in seen:
            errors.add(
                (*path, "custom_id"),
                "COMPONENT_CUSTOM_ID_DUPLICATED",
                "Component custom id cannot be duplicated",
            )
        seen.add(custom_id)


def _check_allowed_mentions(errors: _FormErrors, am: Any) -> None:
    if am is None:
        return
    parse = set(am.get("parse") or [])
    if parse - {"users", "roles", "everyone"}:
        errors.add(
            ("allowed_mentions", "parse"),
            "BASE_TYPE_CHOICES",
            "Value must be one of ('roles', 'users', 'everyone').",
        )
    for kind in ("users", "roles"):
        if kind in parse and am.get(kind):
            errors.add(
                ("allowed_mentions",),
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
            )
        errors.max_length(("allowed_mentions", kind), am.get(kind) or [], 100)


def _without_nulls(value: Any) -> Any:
    """Discord omits null fields when it echoes components (e.g. a unicode emoji's ``id``)."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def _stored_components(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Discord echoes components with a numeric ``id`` on every component."""
    counter = iter(range(1, 10_000))
    stored = []
    for row in rows:
        stored_row: dict[str, Any] = {"type": 1, "id": row.get("id") or next(counter)}
        stored_row["components"] = [
            _without_nulls(c) | {"id": c.get("id") or next(counter)}
            for c in row.get("components") or []
        ]
        stored.append(stored_row)
    return stored


def _checked_modal(data: dict[str, Any]) -> dict[str, Any]:
    errors = _FormErrors()
    errors.max_length(("data", "custom_id"), data.get("custom_id"), 100)
    errors.max_length(("data", "title"), data.get("title"), 45)
    if not data.get("custom_id") or not data.get("title"):
        errors.add(("data",), "BASE_TYPE_REQUIRED", "custom_id and title are required")
    rows = data.get("components") or []
    if not 1 <= len(rows) <= 5:
        errors.add(
            ("data", "components"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length."
        )
    for index, text_input in enumerate(_modal_inputs(rows)):
        path = ("data", "components", index)
        if text_input.get("type") != 4 or not text_input.get("custom_id"):
            errors.add(
                path, "STANDIN_UNSUPPORTED", "Only text inputs are modelled by the stand-in."
            )
        errors.max_length((*path, "label"), text_input.get("label"), 45)
        errors.max_length((*path, "value"), text_input.get("value"), 4000)
        errors.max_length((*path, "placeholder"), text_input.get("placeholder"), 100)
    errors.raise_if_any()
    return _with_ids(data)


def _with_ids(modal: dict[str, Any]) -> dict[str, Any]:
    """A copy of the modal with Discord's numeric ``id`` on every component."""
    counter = iter(range(1, 10_000))

    def number(component: dict[str, Any]) -> dict[str, Any]:
        stored = {**component, "id": component.get("id") or next(counter)}
        if "components" in component:
            stored["components"] = [number(c) for c in component["components"]]
        if isinstance(component.get("component"), dict):
            stored["component"] = number(component["component"])
        return stored

    return {**modal, "components": [number(c) for c in modal.get("components") or []]}


def _modal_inputs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Text inputs of a modal: in action rows (type 1) or labels (type 18)."""
    inputs = []
    for row in rows:
        if row.get("type") == 18:
            inputs.append(row.get("component") or {})
        else:
            inputs.extend(row.get("components") or [])
    return inputs


def _modal_submission(
    modal: dict[str, Any], values: dict[str, str], raw: bool
) -> list[dict[str, Any]]:
    inputs = {i["custom_id"]: i for i in _modal_inputs(modal["components"])}
    if not raw:
        for custom_id, value in values.items():
            spec = inputs.get(custom_id)
            if spec is None:
                raise CommandRefused(f"the modal has no input {custom_id!r}")
            if not spec.get("min_length", 0) <= len(value) <= spec.get("max_length", 4000):
                low, high = spec.get("min_length", 0), spec.get("max_length", 4000)
                raise CommandRefused(f"{custom_id!r} must be {low}-{high} characters")
        missing = [c for c, i in inputs.items() if i.get("required", True) and not values.get(c)]
        if missing:
            raise CommandRefused(f"required modal inputs left empty: {missing}")

    def submitted(text_input: dict[str, Any]) -> dict[str, Any]:
        custom_id = text_input["custom_id"]
        return {
            "type": 4,
            "id": text_input["id"],
            "custom_id": custom_id,
            "value": values.get(custom_id, ""),
        }

    rows = []
    for row in modal["components"]:
        if row.get("type") == 18:
            rows.append({"type": 18, "id": row["id"], "component": submitted(row["component"])})
        else:
            children = [submitted(c) for c in row["components"]]
            rows.append({"type": 1, "id": row["id"], "components": children})
    return rows


_COMMAND_NAME = re.compile(r"^[-_'\w]{1,32}$")


def _check_command(
    errors: _FormErrors,
    path: tuple[str | int, ...],
    command: dict[str, Any],
    seen: set[tuple[str, int]],
) -> None:
    kind, name = command.get("type", 1), command.get("name") or ""
    if (name, kind) in seen:
        errors.add(
            (*path, "name"),
            "APPLICATION_COMMANDS_DUPLICATE_NAME",
            f"Application command names must be unique ({name})",
        )
    seen.add((name, kind))
    if kind == 1:
        _check_option_like(errors, path, command)
    elif not 1 <= len(name) <= 32:
        errors.add((*path, "name"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length.")


def _check_option_like(
    errors: _FormErrors, path: tuple[str | int, ...], node: dict[str, Any]
) -> None:
    """A CHAT_INPUT command, subcommand group or subcommand: its naming and its options."""
    _check_naming(errors, path, node)
    options = node.get("options") or []
    errors.max_length((*path, "options"), options, 25)
    optional_seen = False
    names: set[str] = set()
    for index, option in enumerate(options):
        option_path = (*path, "options", index)
        if option.get("name") in names:
            errors.add(
                (*option_path, "name"),
                "APPLICATION_COMMAND_OPTIONS_DUPLICATE_NAME",
                "Option names must be unique",
            )
        names.add(option.get("name"))
        if option.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP):
            _check_option_like(errors, option_path, option)
            continue
        if option.get("required") and optional_seen:
            errors.add(
                (*option_path, "required"),
                "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                "Required options must be placed before non-required options",
            )
        optional_seen = optional_seen or not option.get("required")
        _check_value_option(errors, option_path, option)


def _check_value_option(
    errors: _FormErrors, path: tuple[str | int, ...], option: dict[str, Any]
) -> None:
    _check_naming(errors, path, option)
    if option.get("type") not in range(STRING, ATTACHMENT + 1):
        errors.add((*path, "type"), "BASE_TYPE_CHOICES", "Invalid option type")
    errors.max_length((*path, "choices"), option.get("choices") or [], 25)
    for key, low, high in (("min_length", 0, 6000), ("max_length", 1, 6000)):
        if option.get(key) is not None and not low <= option[key] <= high:
            errors.add((*path, key), "NUMBER_TYPE_MAX", f"{key} must be between {low} and {high}.")


def _check_naming(errors: _FormErrors, path: tuple[str | int, ...], node: dict[str, Any]) -> None:
    name, description = node.get("name") or "", node.get("description") or ""
    if not _COMMAND_NAME.match(name) or name != name.lower():
        errors.add((*path, "name"), "APPLICATION_COMMAND_INVALID_NAME", f"Invalid name {name!r}")
    if not 1 <= len(description) <= 100:
        errors.add(
            (*path, "description"), "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
        )


def _stored_option(option: dict[str, Any]) -> dict[str, Any]:
    stored = {k: v for k, v in option.items() if v is not None}
    if "options" in stored:
        stored["options"] = [_stored_option(o) for o in stored["options"]]
    if "choices" in stored:
        stored["choices"] = [
            {k: v for k, v in c.items() if v is not None} for c in stored["choices"]
        ]
    return stored


@dataclass
class _OptionBuilder:
    """Turns test kwargs into INTERACTION_CREATE options, refusing what Discord's client would."""

    fake: FakeDiscord
    channel: Channel
    member: Member
    raw: bool
    resolved: dict[str, dict[str, Any]] = field(default_factory=dict)

    def build(
        self, command: dict[str, Any] | None, names: list[str], values: dict[str, Any]
    ) -> list[dict[str, Any]]:
        node = command or {"name": names[0], "type": 1, "options": []}
        return self._descend(node, names[1:], values, names[0])

    def _descend(
        self, node: dict[str, Any], names: list[str], values: dict[str, Any], path: str
    ) -> list[dict[str, Any]]:
        """Nests subcommand groups and subcommands as Discord does: one option per level."""
        subs = [o for o in node.get("options", []) if o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)]
        if not names:
            if subs and not self.raw:
                raise CommandRefused(f"/{path} needs a subcommand")
            return self._leaf(node, values, path)
        child = next((o for o in subs if o["name"] == names[0]), None)
        if child is None:
            if not self.raw:
                raise CommandRefused(f"/{path} has no subcommand {names[0]!r}")
            kind = SUB_COMMAND if len(names) == 1 else SUB_COMMAND_GROUP
            child = {"name": names[0], "type": kind, "options": []}
        options = self._descend(child, names[1:], values, f"{path} {names[0]}")
        return [{"name": child["name"], "type": child["type"], "options": options}]

    def _leaf(
        self, node: dict[str, Any], values: dict[str, Any], path: str
    ) -> list[dict[str, Any]]:
        declared = {o["name"]: o for o in node.get("options", [])}
        if not self.raw:
            unknown = sorted(set(values) - set(declared))
            if unknown:
                raise CommandRefused(f"/{path} declares no option(s) {unknown}")
            missing = [n for n, o in declared.items() if o.get("required") and n not in values]
            if missing:
                raise CommandRefused(f"/{path} is missing required option(s) {missing}")
        return [self._option(declared.get(name), name, value) for name, value in values.items()]

    def _option(self, declared: dict[str, Any] | None, name: str, value: Any) -> dict[str, Any]:
        kind = declared["type"] if declared else _guess_type(value)
        if not self.raw and declared is not None:
            _check_value(declared, value)
        return {"name": name, "type": kind, "value": self._wire_value(kind, value)}

    def _wire_value(self, kind: int, value: Any) -> Any:
        """Model objects become ids, with their payloads in ``data.resolved``."""
        if kind == ATTACHMENT and isinstance(value, Upload | tuple):
            attachment = self.fake._store_upload(self.channel, _as_upload(value), ephemeral=True)
            return self._resolve(
                "attachments", attachment.id, self.fake._attachment_payload(attachment)
            )
        if isinstance(value, Member):
            member = value.payload(with_user=False)
            member["permissions"] = str(value.permissions_in(self.channel))
            self._resolve("members", value.id, member)
            return self._resolve("users", value.id, value.user.payload())
        if isinstance(value, User):
            return self._resolve("users", value.id, value.payload())
        if isinstance(value, Role):
            return self._resolve("roles", value.id, value.payload())
        if isinstance(value, Channel):
            return self._resolve("channels", value.id, value.payload(for_member=self.member))
        return value

    def _resolve(self, kind: str, key: int, payload: dict[str, Any]) -> str:
        self.resolved.setdefault(kind, {})[str(key)] = payload
        return str(key)


def _guess_type(value: Any) -> int:
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return NUMBER
    if isinstance(value, Upload | tuple):
        return ATTACHMENT
    return {Member: USER, User: USER, Role: ROLE, Channel: CHANNEL}.get(type(value), STRING)


_ACCEPTS: dict[int, tuple[type, ...]] = {
    STRING: (str,),
    INTEGER: (int,),
    BOOLEAN: (bool,),
    USER: (Member, User),
    CHANNEL: (Channel,),
    ROLE: (Role,),
    MENTIONABLE: (Member, User, Role),
    NUMBER: (int, float),
    ATTACHMENT: (Upload, tuple),
}


def _check_value(declared: dict[str, Any], value: Any) -> None:
    name, kind = declared["name"], declared["type"]
    accepts = _ACCEPTS.get(kind, ())
    if not isinstance(value, accepts) or (isinstance(value, bool) and kind != BOOLEAN):
        raise CommandRefused(f"option {name!r} (type {kind}) cannot take {value!r}")
    if kind in (INTEGER, NUMBER):
        low = max(declared.get("min_value", -MAX_SAFE_INTEGER), -MAX_SAFE_INTEGER)
        high = min(declared.get("max_value", MAX_SAFE_INTEGER), MAX_SAFE_INTEGER)
        if not low <= value <= high:
            raise CommandRefused(f"option {name!r} must be within {low}..{high}, got {value}")
    if kind == STRING and isinstance(value, str):
        shortest, longest = declared.get("min_length", 0), declared.get("max_length", 6000)
        if not shortest <= len(value) <= longest:
            raise CommandRefused(f"option {name!r} length must be within {shortest}..{longest}")
    choices = declared.get("choices")
    if choices and value not in [c["value"] for c in choices]:
        raise CommandRefused(
            f"option {name!r} must be one of {[c['value'] for c in choices]}, got {value!r}"
        )
