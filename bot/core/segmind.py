"""The client for Segmind's SD1.5 API: one paid POST per attempt, never blindly retried.

Every upstream fact (paths, header names, statuses, ranges) comes from
:mod:`bot.core.upstream_api`. Every failure becomes an :class:`UpstreamError` subclass that says
whether the call may have been billed (``maybe_billed``), must pause generation (``pauses``) or
may be retried (``retry_safe``), and carries the balance the API reported with it.

``generate`` retries only what provably was not billed: a connection that never opened
(capped exponential backoff with jitter) and a 429 (wait until its reset time, capped). A 5xx,
a timeout or a connection dropped after the request was sent is raised at once: the outcome
is unknown and only a member may decide to pay again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

import aiohttp
from aiolimiter import AsyncLimiter

from bot.core import upstream_api as api
from bot.core.errors import (
    UpstreamBadResponse,
    UpstreamDisconnected,
    UpstreamError,
    UpstreamMisconfigured,
    UpstreamOutOfCredits,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from bot.core.images import ResultImage, check_result
from bot.core.params import JobParams

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

MAX_RESULT_BYTES: Final = 50 * 2**20
_MAX_ERROR_BODY_BYTES: Final = 64 * 2**10
_DETAIL_CHARS: Final = 200
_JSON: Final = "application/json"
_OK: Final = HTTPStatus.OK.value


Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Generation:
    """A successful call: the image bytes exactly as the API sent them (decoded from base64
    when it answered JSON), the balance it reported and how long the API took."""

    images: tuple[ResultImage, ...] = field(repr=False)
    remaining_credits: Decimal | None
    elapsed: float
    request_started_at: datetime


@dataclass(frozen=True)
class RetryPolicy:
    """What ``generate`` retries, and how long it waits. Tests shrink the numbers."""

    connect_attempts: int = 3  # tries in all when the connection cannot be opened
    backoff_initial: float = 1.0
    backoff_max: float = 8.0
    rate_limit_retries: int = 3
    rate_limit_default_wait: float = 20.0  # a 429 without a readable reset time
    rate_limit_min_wait: float = 1.0  # a reset time already past (clock skew)
    rate_limit_max_wait: float = 65.0  # one wait; a plan's window is a minute
    rate_limit_total_wait: float = 150.0  # all waits of one generate()

    def backoff(self, failures: int) -> float:
        # Capped exponential backoff with "equal jitter": between half and all of the step.
        step = min(self.backoff_initial * 2.0 ** (failures - 1), self.backoff_max)
        return step * (0.5 + random.random() / 2)

    def rate_limit_wait(self, reset_at: datetime | None) -> float:
        if reset_at is None:
            return self.rate_limit_default_wait
        wait = (reset_at - datetime.now(UTC)).total_seconds()
        return min(max(wait, self.rate_limit_min_wait), self.rate_limit_max_wait)


@dataclass
class _RetryBudget:
    policy: RetryPolicy
    connect_failures: int = 0
    rate_limited: int = 0
    waited: float = 0.0

    def next_wait(self, err: UpstreamError) -> float | None:
        """Seconds to wait before the next attempt, or None to give up and raise ``err``."""
        if isinstance(err, UpstreamRateLimited):
            self.rate_limited += 1
            wait = self.policy.rate_limit_wait(err.reset_at)
            if (
                self.rate_limited > self.policy.rate_limit_retries
                or self.waited + wait > self.policy.rate_limit_total_wait
            ):
                return None
            self.waited += wait
            return wait
        if isinstance(err, UpstreamUnreachable):
            self.connect_failures += 1
            if self.connect_failures >= self.policy.connect_attempts:
                return None
            return self.policy.backoff(self.connect_failures)
        return None


@dataclass(frozen=True)
class _Reply:
    body: bytes
    remaining_credits: Decimal | None
    elapsed: float
    started_at: datetime


class _Secret:
    """Holds the API key so that no repr, str or debugger view of the client shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"


class SegmindClient:
    """One long-lived HTTP session to the API, shared by every job of the process."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        max_concurrency: int,
        requests_per_minute: int,
        timeout_total: float,
        timeout_connect: float,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rate_window: float = 60.0,
        max_result_bytes: int = MAX_RESULT_BYTES,
    ) -> None:
        """``sleep`` and ``rate_window`` (the seconds ``requests_per_minute`` counts over)
        exist so that tests can make the waits instant and the rate limiter fast."""
        self._base_url = base_url.rstrip("/")
        self._key = _Secret(api_key)
        self._session = session
        self._owns_session = session is None
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._max_result_bytes = max_result_bytes
        self._slots = asyncio.Semaphore(max_concurrency)
        # A leaky bucket: a burst of ``requests_per_minute``, then one every 60/rpm seconds.
        self._limiter = AsyncLimiter(requests_per_minute, rate_window)
        # sock_read: a synchronous generation is silent until the image comes, so the gap
        # between reads can be as long as the whole call.
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_total,
            connect=timeout_connect,
            sock_connect=timeout_connect,
            sock_read=timeout_total,
        )
        self._resume_at = 0.0  # loop time before which no request goes out (after a 429)
        # The last balance any response reported, and when (kept when a response has none).
        self.last_remaining_credits: Decimal | None = None
        self.last_seen_at: datetime | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, session: aiohttp.ClientSession | None = None
    ) -> SegmindClient:
        return cls(
            settings.segmind_base_url,
            settings.require_api_key(),
            max_concurrency=settings.segmind_max_concurrency,
            requests_per_minute=settings.segmind_requests_per_minute,
            timeout_total=settings.upstream_timeout,
            timeout_connect=settings.upstream_connect_timeout,
            session=session,
        )

    def __repr__(self) -> str:
        return f"SegmindClient(base_url={self._base_url!r})"

    async def start(self) -> None:
        if self._session is None:
            # force_close: one connection per call. A POST on a stale pooled keep-alive
            # connection fails ambiguously and would look like a maybe-billed drop; a fresh
            # handshake costs milliseconds next to a generation of seconds, at ≤ 50 calls/min.
            # trust_env=False: the key never goes through a proxy picked up from the env.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True),
                trust_env=False,
                timeout=self._timeout,
            )

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def generate(self, params: JobParams, image: bytes) -> Generation:
        """Run one job. Raises an :class:`UpstreamError` subclass on any failure."""
        body = await asyncio.to_thread(_request_body, params, image)
        budget = _RetryBudget(self._retry)
        while True:
            try:
                reply = await self._post(params.kind.path, body)
            except (UpstreamUnreachable, UpstreamRateLimited) as err:
                wait = budget.next_wait(err)
                if wait is None:
                    raise
                log.info("Segmind %s: %s; retrying in %.1f s", params.kind.value, err, wait)
                await self._wait_before_retry(err, wait)
                continue
            try:
                images = await asyncio.to_thread(_extract_images, reply.body)
            except _NotAnImage as exc:
                raise UpstreamBadResponse(
                    str(exc), status=_OK, remaining_credits=reply.remaining_credits
                ) from None
            return Generation(images, reply.remaining_credits, reply.elapsed, reply.started_at)

    async def check_key(self) -> Decimal | None:
        """Prove that the key and the URL work without paying; return the balance if told.

        ``upstream_api`` knows no free endpoint, so this POSTs an empty JSON object to the
        img2img endpoint. ASSUMPTION (Segmind's docs: only a 200 is billed, a 422 is not): the
        API checks the key and the URL before the body, so a working key gets 422 (no image,
        no prompt) and nothing is generated or billed. Any other answer raises the
        :class:`UpstreamError` it maps to (401/404/405 → UpstreamMisconfigured, ...).
        """
        try:
            reply = await self._post(api.IMG2IMG_PATH, b"{}")
        except UpstreamRejected as err:
            return err.remaining_credits
        log.warning("Segmind accepted an empty request: the key works, but it may be billed")
        return reply.remaining_credits

    async def _wait_before_retry(self, err: UpstreamError, wait: float) -> None:
        if isinstance(err, UpstreamRateLimited):
            # The limit is the account's: hold every request, not only this one.
            resume_at = asyncio.get_running_loop().time() + wait
            self._resume_at = max(self._resume_at, resume_at)
        else:
            await self._sleep(wait)

    async def _post(self, path: str, body: bytes) -> _Reply:
        """One attempt: wait out a 429, take a concurrency slot and a rate token, send."""
        session = self._session
        if session is None:
            raise RuntimeError("SegmindClient.start() was not called")
        paused = self._resume_at - asyncio.get_running_loop().time()
        if paused > 0:
            await self._sleep(paused)
        async with self._slots:
            await self._limiter.acquire()
            return await self._exchange(session, path, body)

    async def _exchange(self, session: aiohttp.ClientSession, path: str, body: bytes) -> _Reply:
        started_at = datetime.now(UTC)
        started = time.monotonic()
        status: int | None = None
        credits: Decimal | None = None
        try:
            async with session.post(
                self._base_url + path,
                data=body,
                headers={"Content-Type": _JSON, api.API_KEY_HEADER: self._key.reveal()},
                allow_redirects=False,  # a redirect would carry the key to another host
                timeout=self._timeout,
            ) as resp:
                status = resp.status
                credits = self._note_credits(resp.headers.get(api.REMAINING_CREDITS_HEADER))
                if status != _OK:
                    raise _status_error(resp, await _error_body(resp), credits, self._key)
                data = await _read_at_most(resp, self._max_result_bytes)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _transport_error(exc, status, credits, self._key) from exc
        elapsed = time.monotonic() - started
        log.debug("Segmind %s: 200 in %.2f s, %d bytes", path, elapsed, len(data))
        if len(data) > self._max_result_bytes:
            raise UpstreamBadResponse(
                f"result larger than {self._max_result_bytes} bytes",
                status=status,
                remaining_credits=credits,
            )
        return _Reply(data, credits, elapsed, started_at)

    def _note_credits(self, header: str | None) -> Decimal | None:
        credits = parse_credits(header)
        if credits is not None:
            self.last_remaining_credits = credits
            self.last_seen_at = datetime.now(UTC)
        return credits


# --- parsing headers -------------------------------------------------------------------------

_EPOCH: Final = re.compile(r"\d{1,13}(\.\d+)?")


def parse_credits(value: str | None) -> Decimal | None:
    """``x-remaining-credits`` as a Decimal; None when absent or not a finite number."""
    if value is None or len(value) > 64:
        return None
    try:
        credits = Decimal(value.strip())
    except InvalidOperation:
        return None
    return credits if credits.is_finite() else None


def parse_reset_at(value: str | None) -> datetime | None:
    """``x-rate-limit-reset-at-utc`` as an aware UTC datetime; None when absent or unreadable.

    The format is UNCONFIRMED, so this accepts ISO 8601 (no zone = UTC), epoch seconds or
    milliseconds, and an HTTP-date.
    """
    text = (value or "").strip()
    if not text or len(text) > 64:
        return None
    try:
        if _EPOCH.fullmatch(text):
            seconds = float(text)
            return datetime.fromtimestamp(seconds / 1000 if seconds > 1e11 else seconds, UTC)
        parsed = datetime.fromisoformat(text) if text[:4].isdigit() else parsedate_to_datetime(text)
    except (ValueError, TypeError, OverflowError, OSError):
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# --- mapping failures ------------------------------------------------------------------------


def _status_error(
    resp: aiohttp.ClientResponse, body: bytes, credits: Decimal | None, key: _Secret
) -> UpstreamError:
    status = resp.status
    message = _error_message(body, key)
    cls: type[UpstreamError]
    if 300 <= status < 400:
        cls, message = UpstreamMisconfigured, "redirect refused (redirects are never followed)"
    elif status in api.MISCONFIGURATION_STATUSES:
        cls = UpstreamMisconfigured
    elif status == api.STATUS_NOT_ENOUGH_CREDITS:
        cls = (
            UpstreamMisconfigured
            if api.NOT_ACCEPTABLE_CONTENT_TYPE.search(message)
            else UpstreamOutOfCredits
        )
    elif status == api.STATUS_RATE_LIMITED:
        reset_at = parse_reset_at(resp.headers.get(api.RATE_LIMIT_RESET_HEADER))
        return UpstreamRateLimited(
            message, reset_at=reset_at, status=status, remaining_credits=credits
        )
    elif 400 <= status < 500:
        cls = UpstreamRejected
    elif status >= 500:
        cls = UpstreamServerError
    else:  # 1xx or a 2xx that is not 200: we cannot tell what happened
        cls = UpstreamBadResponse
    return cls(message, status=status, remaining_credits=credits)


def _transport_error(
    exc: Exception, status: int | None, credits: Decimal | None, key: _Secret
) -> UpstreamError:
    cls: type[UpstreamError]
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        cls = UpstreamUnreachable  # the connection never opened: nothing was sent
    elif isinstance(exc, TimeoutError):
        cls = UpstreamTimeout  # total or sock_read: the request was sent
    elif isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        cls = UpstreamDisconnected
    elif isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        cls = UpstreamMisconfigured
    else:  # e.g. an unparsable HTTP answer
        cls = UpstreamBadResponse
    detail = _scrub(f"{type(exc).__name__}: {exc}", key)
    return cls(detail, status=status, remaining_credits=credits)


async def _error_body(resp: aiohttp.ClientResponse) -> bytes:
    # The status already says what happened; a body that fails to arrive only costs the message.
    try:
        return await _read_at_most(resp, _MAX_ERROR_BODY_BYTES)
    except (aiohttp.ClientError, TimeoutError):
        return b""


async def _read_at_most(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to ``limit + 1`` bytes of the body: more than ``limit`` means it is too large."""
    data = bytearray()
    while len(data) <= limit and (chunk := await resp.content.read(limit + 1 - len(data))):
        data += chunk
    return bytes(data)


def _error_message(body: bytes, key: _Secret) -> str:
    """The API's ``{"error": "..."}`` message, or the text of a non-JSON (e.g. HTML) body."""
    text = body.decode("utf-8", "replace")
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        found = next((payload[k] for k in ("error", "message", "detail") if k in payload), payload)
        text = found if isinstance(found, str) else json.dumps(found)
    else:
        text = re.sub(r"<[^>]*>", " ", text)
    return _scrub(text, key)


def _scrub(text: str, key: _Secret) -> str:
    """One short line without the key or anything shaped like one."""
    text = text.replace(key.reveal(), "[redacted]")
    text = api.API_KEY_PATTERN.sub("[redacted]", text)
    return " ".join(text.split())[:_DETAIL_CHARS]


# --- bodies ----------------------------------------------------------------------------------


def _request_body(params: JobParams, image: bytes) -> bytes:
    return json.dumps(params.payload(base64.b64encode(image).decode("ascii"))).encode()


class _NotAnImage(Exception):
    """A 200 whose body is not the image(s) we asked for."""


def _extract_images(body: bytes) -> tuple[ResultImage, ...]:
    """The image(s) of a 200, each proven to decode. Runs in a worker thread."""
    images = _images_from_json(body) if re.match(rb"\s*\{", body) else (body,)
    try:
        return tuple(check_result(data) for data in images)
    except UpstreamBadResponse as exc:
        raise _NotAnImage(exc.detail) from None


def _images_from_json(body: bytes) -> tuple[bytes, ...]:
    """The ``base64: true`` answer: a string or a list under one of BASE64_JSON_IMAGE_KEYS."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise _NotAnImage("a JSON answer that does not parse") from None
    found = None
    if isinstance(payload, dict):
        found = next((payload[k] for k in api.BASE64_JSON_IMAGE_KEYS if k in payload), None)
    items = [found] if isinstance(found, str) else found
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise _NotAnImage("a JSON answer without base64 images")
    try:
        # Tolerate a data URL ("data:image/jpeg;base64,...").
        return tuple(base64.b64decode(i.rpartition(",")[2], validate=True) for i in items)
    except (binascii.Error, ValueError):
        raise _NotAnImage("a JSON answer whose images are not base64") from None
