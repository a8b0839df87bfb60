"""A loopback stand-in for Segmind's SD1.5 API, for the bot's tests and benchmarks.

    async with FakeSegmind(balance=Decimal(10), price=Decimal(1)) as fake:
        client = SegmindClient(fake.base_url, fake.api_key, ...)
        fake.inject(Hang())                      # the next request never gets an answer
        fake.mode = Delay(0.5)                   # every later request waits first
        ...
        assert fake.billed == 1 and fake.balance == 9

It enforces the documented contract, with every fact taken from ``bot.core.upstream_api``:
the two POST paths (another path: 404 JSON; another method: 405 HTML), the ``x-api-key``
header (a Bearer header is refused: 401), a JSON Content-Type (else 406 with a Content-Type
message), every range and allowed value (422 ``{"error": "<field>: ..."}``) and an ``image``
that really is a base64-encoded image. It keeps an account balance, charges ``price`` on
every 200 and nothing else (406 when the balance is short), and reports the balance in
``x-remaining-credits`` on every response. A 200 is a real image of the requested size, the
same bytes for the same seed and input: JPEG unless ``result_format`` says PNG or WEBP, JSON
``{"images": [base64, ...]}`` when the request asks for ``base64``.

Faults replace the normal answer, or alter it, for the next requests in order
(:meth:`FakeSegmind.inject`) or for every request while the queue is empty
(:attr:`FakeSegmind.mode`). Every wait is bounded, and closing the stand-in releases them.

Stricter than the real API where that catches our bugs: unknown fields are refused (422).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import random
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import format_datetime
from types import TracebackType
from typing import Any, Literal, Self

from aiohttp import web
from PIL import Image

from bot.core import upstream_api as api
from bot.core.params import JobKind

DEFAULT_API_KEY = "SG_0123456789abcdef"
CONTENT_TYPE_ERROR = "Content-Type must be application/json"
NOT_ENOUGH_CREDITS = "Not enough credits"
METHOD_NOT_ALLOWED_HTML = (
    "<html><head><title>405 Not Allowed</title></head>"
    "<body><center><h1>405 Not Allowed</h1></center><hr><center>nginx</center></body></html>"
)
_JSON = "application/json"
_MAX_REQUEST_BYTES = 64 * 2**20
_WAIT_BOUND = 10.0
_IMG2IMG_DEFAULT_SIDE = 512  # the docs page's default
_OUTPAINT_DEFAULT_SIDE = 1024  # the docs' sample (its "default: 1" is a scraping artefact)
_KINDS = {kind.path: kind for kind in JobKind}


# --- faults --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Respond:
    """Answer ``status`` instead (not billed). A mapping body is JSON, a str is HTML;
    None is ``{"error": "injected <status>"}``."""

    status: int
    body: Mapping[str, Any] | str | bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RateLimited:
    """429, carrying ``x-rate-limit-reset-at-utc: reset_at`` if given (see :func:`reset_header`)."""

    reset_at: str | None = None


@dataclass(frozen=True)
class Hang:
    """Read the request and never answer (until the stand-in closes or ``max_hang`` passes,
    then drop the connection). Not billed."""


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds``, then answer normally."""

    seconds: float


@dataclass(frozen=True)
class Drop:
    """Close the connection after reading the request, without answering. With
    ``after_billing`` the request is served (and, if it succeeds, charged) first: the
    "unknown outcome" that really was billed."""

    after_billing: bool = False


@dataclass(frozen=True)
class Garbage:
    """If the request succeeds (and is charged), answer random bytes labelled image/jpeg."""


@dataclass(frozen=True)
class Truncated:
    """If the request succeeds (and is charged), answer its body cut in half."""


@dataclass(frozen=True)
class Redirect:
    """302 to another local server, which records whether it ever received the key."""


@dataclass(frozen=True)
class CreditsHeader:
    """Answer normally, but with ``x-remaining-credits: value`` (None: no header at all)."""

    value: str | None


Fault = Respond | RateLimited | Hang | Delay | Drop | Garbage | Truncated | Redirect | CreditsHeader
Price = Decimal | Callable[[str, Mapping[str, Any]], Decimal]


def reset_header(at: datetime, style: Literal["iso", "epoch", "http"]) -> str:
    """``at`` as ``x-rate-limit-reset-at-utc`` might write it (the format is unconfirmed)."""
    at = at.astimezone(UTC)
    if style == "iso":
        return at.isoformat().replace("+00:00", "Z")
    if style == "epoch":
        return str(int(at.timestamp()))
    return format_datetime(at, usegmt=True)


# --- records -------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # every header that does not carry the API key
    body: dict[str, Any] | None  # the JSON object without "image"; None if not a JSON object
    at: float  # time.monotonic() on arrival
    carried_key: bool  # the configured key was in some header (right name or not)
    status: int | None = None  # None while unanswered, and for a dropped or hung request


@dataclass
class _Answer:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def error(cls, status: int, message: str) -> _Answer:
        return cls(status, json.dumps({"error": message}).encode(), _JSON)


# --- the stand-in --------------------------------------------------------------------------


class FakeSegmind:
    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        balance: Decimal = Decimal(1000),
        price: Price = Decimal(1),
        result_format: Literal["JPEG", "PNG", "WEBP"] = "JPEG",
        latency: float = 0.0,
        strict_fields: bool = True,
        max_hang: float = 60.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """``latency``: seconds every successful generation takes (for benchmarks).
        ``port``: 0 picks a free one; a fixed one lets a test start the stand-in late."""
        self.api_key = api_key
        self.balance = balance
        self.price = price
        self.result_format = result_format
        self.latency = latency
        self.strict_fields = strict_fields
        self.max_hang = max_hang
        self.mode: Fault | None = None
        self.requests: list[RecordedRequest] = []
        self.redirect_hits: list[RecordedRequest] = []
        self.billed = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._host = host
        self._port = port
        self._faults: deque[Fault] = deque()
        self._rng = random.Random(0)  # seeds for seed = -1, reproducible run to run
        self._closing = asyncio.Event()
        self._arrival = asyncio.Condition()
        self._runners: list[web.AppRunner] = []
        self._base_url: str | None = None
        self._redirect_url = ""

    # lifecycle

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("FakeSegmind is not started")
        return self._base_url

    async def start(self) -> None:
        self._closing = asyncio.Event()
        self._base_url = await self._serve(self._handle, self._port)
        self._redirect_url = await self._serve(self._handle_redirected, 0)

    async def close(self) -> None:
        self._closing.set()  # releases every hang, delay and latency at once
        while self._runners:
            await self._runners.pop().cleanup()
        self._base_url = None

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

    async def _serve(
        self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]], port: int
    ) -> str:
        app = web.Application(client_max_size=_MAX_REQUEST_BYTES)
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._runners.append(runner)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, port))
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            raise
        return f"http://{self._host}:{sock.getsockname()[1]}"

    # faults and accounts

    def inject(self, *faults: Fault) -> None:
        """Queue faults for the next requests, one each, in order (then ``mode`` applies)."""
        self._faults.extend(faults)

    async def wait_for_requests(self, count: int) -> None:
        """Wait until ``count`` requests have arrived in all (TimeoutError after 10 s)."""
        async with asyncio.timeout(_WAIT_BOUND), self._arrival:
            await self._arrival.wait_for(lambda: len(self.requests) >= count)

    @property
    def key_leaked(self) -> bool:
        """Whether the redirect target ever received the key."""
        return any(r.carried_key for r in self.redirect_hits)

    def _price_of(self, path: str, body: Mapping[str, Any]) -> Decimal:
        return self.price(path, body) if callable(self.price) else self.price

    # handling

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = _json_object(raw)
        record = self._record(request, body)
        self.requests.append(record)
        async with self._arrival:
            self._arrival.notify_all()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            answer, credits = await self._answer(request, body)
        finally:
            self.in_flight -= 1
        if answer is None:
            if request.transport is not None:
                request.transport.close()
            return web.Response()  # never reaches the client
        record.status = answer.status
        headers = dict(answer.headers)
        if credits is not None:
            headers[api.REMAINING_CREDITS_HEADER] = credits
        return web.Response(
            status=answer.status,
            body=answer.body,
            content_type=answer.content_type,
            headers=headers,
        )

    async def _answer(
        self, request: web.Request, body: dict[str, Any] | None
    ) -> tuple[_Answer | None, str | None]:
        """The answer (None: drop the connection) and the credits header to send with it."""
        fault = self._faults.popleft() if self._faults else self.mode
        answer: _Answer | None = None
        match fault:
            case Respond() | RateLimited() | Redirect():
                answer = self._fault_answer(fault, request.path)
            case Hang():
                await self._pause(self.max_hang)
            case Drop(after_billing=False):
                pass
            case Delay(seconds=seconds):
                if not await self._pause(seconds):
                    answer = await self._contract(request, body)
            case _:
                answer = await self._contract(request, body)
        return self._alter(fault, answer)

    def _alter(
        self, fault: Fault | None, answer: _Answer | None
    ) -> tuple[_Answer | None, str | None]:
        """Apply a fault that changes a served answer; add the credits header's value."""
        served = answer is not None and answer.status == 200
        match fault:
            case Drop(after_billing=True):
                answer = None
            case Garbage() if served:
                answer = _Answer(200, os.urandom(4096), "image/jpeg")
            case Truncated() if answer is not None and served:
                answer = _Answer(200, answer.body[: len(answer.body) // 2], answer.content_type)
            case CreditsHeader(value=value):
                return answer, value
        return answer, str(self.balance)

    def _fault_answer(self, fault: Respond | RateLimited | Redirect, path: str) -> _Answer:
        match fault:
            case Redirect():
                return _Answer(302, b"", "text/plain", {"Location": self._redirect_url + path})
            case RateLimited(reset_at=reset_at):
                answer = _Answer.error(api.STATUS_RATE_LIMITED, "Too many requests")
                if reset_at is not None:
                    answer.headers[api.RATE_LIMIT_RESET_HEADER] = reset_at
                return answer
            case Respond(status=status, body=body, headers=headers):
                if body is None:
                    answer = _Answer.error(status, f"injected {status}")
                elif isinstance(body, str):
                    answer = _Answer(status, body.encode(), "text/html")
                elif isinstance(body, bytes):
                    answer = _Answer(status, body, "application/octet-stream")
                else:
                    answer = _Answer(status, json.dumps(dict(body)).encode(), _JSON)
                answer.headers.update(headers)
                return answer

    async def _contract(self, request: web.Request, body: dict[str, Any] | None) -> _Answer | None:
        """What the real API answers (None: the stand-in closed while generating)."""
        kind = _KINDS.get(request.path)
        if kind is None:
            return _Answer.error(api.STATUS_NOT_FOUND, "Not Found")
        if request.method != "POST":
            return _Answer(
                api.STATUS_METHOD_NOT_ALLOWED, METHOD_NOT_ALLOWED_HTML.encode(), "text/html"
            )
        if request.headers.get(api.API_KEY_HEADER) != self.api_key:
            return _Answer.error(
                api.STATUS_UNAUTHORIZED, f"Unauthorized: send the {api.API_KEY_HEADER} header"
            )
        if request.content_type != _JSON:
            return _Answer.error(api.STATUS_NOT_ENOUGH_CREDITS, CONTENT_TYPE_ERROR)
        if body is None:
            return _Answer.error(api.STATUS_VALIDATION, "the body is not a JSON object")
        if (problem := _problem(kind, body, strict=self.strict_fields)) is not None:
            return _Answer.error(api.STATUS_VALIDATION, problem)
        try:
            source = await asyncio.to_thread(_decode_input, body["image"])
        except Exception:
            return _Answer.error(api.STATUS_VALIDATION, "image: not a base64-encoded image")
        price = self._price_of(request.path, body)
        if self.balance < price:
            return _Answer.error(api.STATUS_NOT_ENOUGH_CREDITS, NOT_ENOUGH_CREDITS)
        if self.latency and await self._pause(self.latency):
            return None
        seed = body.get("seed", -1)
        seed = self._rng.randrange(2**32) if seed == -1 else seed
        images = await asyncio.to_thread(_render, kind, body, source, seed, self.result_format)
        if self.balance < price:  # another call spent it while this one was generating
            return _Answer.error(api.STATUS_NOT_ENOUGH_CREDITS, NOT_ENOUGH_CREDITS)
        self.balance -= price
        self.billed += 1
        if body.get("base64"):
            encoded = [base64.b64encode(i).decode("ascii") for i in images]
            return _Answer(
                200, json.dumps({api.BASE64_JSON_IMAGE_KEYS[0]: encoded}).encode(), _JSON
            )
        return _Answer(200, images[0], f"image/{self.result_format.lower()}")

    async def _handle_redirected(self, request: web.Request) -> web.StreamResponse:
        self.redirect_hits.append(self._record(request, _json_object(await request.read())))
        return web.Response(text="you should not be here")

    def _record(self, request: web.Request, body: dict[str, Any] | None) -> RecordedRequest:
        carrying = {k for k, v in request.headers.items() if self.api_key in v}
        return RecordedRequest(
            method=request.method,
            path=request.path,
            headers={k: v for k, v in request.headers.items() if k not in carrying},
            body=None if body is None else {k: v for k, v in body.items() if k != "image"},
            at=time.monotonic(),
            carried_key=bool(carrying),
        )

    async def _pause(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True if the stand-in is closing."""
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True


# --- validation ----------------------------------------------------------------------------

Rule = Callable[[object], str | None]  # what is wrong with a value, or None


def _whole(rng: api.NumberRange) -> Rule:
    def check(value: object) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and rng.contains(value)
        return None if ok else f"must be a whole number from {rng.describe()}"

    return check


def _number(rng: api.NumberRange) -> Rule:
    def check(value: object) -> str | None:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and rng.contains(value)
        return None if ok else f"must be a number from {rng.describe()}"

    return check


def _one_of(allowed: Sequence[object]) -> Rule:
    def check(value: object) -> str | None:
        ok = not isinstance(value, bool) and value in allowed
        return None if ok else "must be one of " + ", ".join(map(str, allowed))

    return check


def _text(*, required: bool) -> Rule:
    def check(value: object) -> str | None:
        if not isinstance(value, str) or len(value) > api.PROMPT_MAX_CHARS:
            return f"must be a text of at most {api.PROMPT_MAX_CHARS} characters"
        return "must not be empty" if required and not value.strip() else None

    return check


def _flag(value: object) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _seed(value: object) -> str | None:
    ok = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (value == -1 or api.SEED_RANGE.contains(value))
    )
    return None if ok else f"must be -1 or a whole number from {api.SEED_RANGE.describe()}"


def _image(value: object) -> str | None:
    return None if isinstance(value, str) and value else "must be a base64-encoded image"


_REQUIRED = ("image", "prompt")
_COMMON: dict[str, Rule] = {
    "image": _image,
    "prompt": _text(required=True),
    "negative_prompt": _text(required=False),
    "scheduler": _one_of(api.SCHEDULERS),
    "seed": _seed,
}
_FIELDS: dict[JobKind, dict[str, Rule]] = {
    JobKind.IMG2IMG: {
        **_COMMON,
        "samples": _whole(api.IMG2IMG_SAMPLES),
        "num_inference_steps": _whole(api.IMG2IMG_STEPS),
        "guidance_scale": _number(api.IMG2IMG_GUIDANCE),
        "strength": _number(api.IMG2IMG_STRENGTH),
        "img_width": _one_of(api.IMG2IMG_SIDES),
        "img_height": _one_of(api.IMG2IMG_SIDES),
        "base64": _flag,
    },
    JobKind.OUTPAINT: {
        **_COMMON,
        "num_inference_steps": _whole(api.OUTPAINT_STEPS),
        "guidance_scale": _number(api.OUTPAINT_GUIDANCE),
        "strength": _number(api.OUTPAINT_STRENGTH),
        "scale": _number(api.OUTPAINT_SCALE),
        "offset_x": _whole(api.OUTPAINT_OFFSET),
        "offset_y": _whole(api.OUTPAINT_OFFSET),
        "mask_expand": _whole(api.OUTPAINT_MASK_EXPAND),
        "img_width": _one_of(api.OUTPAINT_SIDES),
        "img_height": _one_of(api.OUTPAINT_SIDES),
    },
}


def _problem(kind: JobKind, body: Mapping[str, Any], *, strict: bool) -> str | None:
    """The 422 message for a body, naming the field; None if the body is valid."""
    rules = _FIELDS[kind]
    for name in _REQUIRED:
        if name not in body:
            return f"{name}: field required"
    for name, value in body.items():
        rule = rules.get(name)
        if rule is None:
            if strict:
                return f"{name}: unknown field"
            continue
        if (problem := rule(value)) is not None:
            return f"{name}: {problem}"
    return None


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


# --- images (run in worker threads) --------------------------------------------------------


def _decode_input(text: str) -> Image.Image:
    with Image.open(io.BytesIO(base64.b64decode(text, validate=True))) as im:
        im.load()
        return im.convert("RGB")


def _render(
    kind: JobKind, body: Mapping[str, Any], source: Image.Image, seed: int, fmt: str
) -> list[bytes]:
    if kind is JobKind.IMG2IMG:
        size = (
            body.get("img_width", _IMG2IMG_DEFAULT_SIDE),
            body.get("img_height", _IMG2IMG_DEFAULT_SIDE),
        )
        base = source.resize(size)
        frames = [
            Image.blend(base, Image.new("RGB", size, _colour(seed + i)), 0.5)
            for i in range(body.get("samples", 1))
        ]
    else:
        canvas = (
            body.get("img_width", _OUTPAINT_DEFAULT_SIDE),
            body.get("img_height", _OUTPAINT_DEFAULT_SIDE),
        )
        offset = (body.get("offset_x", 0), body.get("offset_y", 0))
        frames = [_outpaint(source, canvas, offset, body.get("scale", 1.0), _colour(seed))]
    return [_encode(frame, fmt) for frame in frames]


def _outpaint(
    source: Image.Image,
    canvas: tuple[int, int],
    offset: tuple[int, int],
    scale: float,
    colour: tuple[int, int, int],
) -> Image.Image:
    """The canvas in ``colour`` with the input drawn at ``offset``, ``scale`` times its size.
    Only the visible part is resized, so a large scale costs no more than the canvas."""
    out = Image.new("RGB", canvas, colour)
    visible = (
        min(canvas[0] - offset[0], round(source.width * scale)),
        min(canvas[1] - offset[1], round(source.height * scale)),
    )
    if visible[0] > 0 and visible[1] > 0:
        box = (0, 0, min(source.width, visible[0] / scale), min(source.height, visible[1] / scale))
        out.paste(source.resize(visible, box=box), offset)
    return out


def _colour(seed: int) -> tuple[int, int, int]:
    rng = random.Random(seed)
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, quality=90)
    return buf.getvalue()
