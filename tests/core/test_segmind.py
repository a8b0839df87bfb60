"""SegmindClient against the loopback stand-in: status mapping, retries, limits, secrecy."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import logging
import socket
import traceback
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from PIL import Image

from bot.config import Settings
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
from bot.core.params import Img2ImgParams, img2img_params, outpaint_params
from bot.core.segmind import (
    RetryPolicy,
    SegmindClient,
    _Secret,
    _transport_error,
    parse_credits,
    parse_reset_at,
)
from tests.core.conftest import RecordedSleeps
from tests.standins.fake_segmind import (
    CONTENT_TYPE_ERROR,
    METHOD_NOT_ALLOWED_HTML,
    NOT_ENOUGH_CREDITS,
    CreditsHeader,
    Drop,
    FakeSegmind,
    Fault,
    Garbage,
    Hang,
    RateLimited,
    Redirect,
    Respond,
    Truncated,
    reset_header,
)

START_BALANCE = Decimal(1000)


def _png(size: tuple[int, int] = (64, 64), colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def _img2img(**options: Any) -> Img2ImgParams:
    return img2img_params(prompt="a red square", input_size=(64, 64), seed=7, **options)


def _client(base_url: str, api_key: str, **overrides: Any) -> SegmindClient:
    options: dict[str, Any] = {
        "max_concurrency": 4,
        "requests_per_minute": 1000,
        "timeout_total": 5.0,
        "timeout_connect": 1.0,
        "sleep": RecordedSleeps(),
    }
    return SegmindClient(base_url, api_key, **(options | overrides))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _fail(client: SegmindClient, params: Any = None) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        await client.generate(params or _img2img(), _png())
    return caught.value


# --- success ---------------------------------------------------------------------------------


async def test_img2img_returns_the_image_and_the_balance(
    fake_segmind: FakeSegmind, segmind: SegmindClient
) -> None:
    gen = await segmind.generate(_img2img(), _png())

    assert len(gen.images) == 1
    with Image.open(io.BytesIO(gen.images[0].data)) as im:
        assert (im.format, im.size) == ("JPEG", (512, 512))
    assert gen.remaining_credits == fake_segmind.balance == START_BALANCE - 1
    assert fake_segmind.billed == 1
    assert segmind.last_remaining_credits == gen.remaining_credits
    assert segmind.last_seen_at is not None
    assert gen.elapsed > 0
    assert gen.request_started_at <= datetime.now(UTC)
    sent = fake_segmind.requests[0]
    assert sent.carried_key and sent.headers["Content-Type"] == "application/json"
    # One connection per call: a stale pooled one could fail ambiguously after sending.
    assert sent.headers["Connection"] == "close"
    assert sent.body is not None and sent.body["num_inference_steps"] == 25


async def test_outpaint_returns_the_canvas(
    fake_segmind: FakeSegmind, segmind: SegmindClient
) -> None:
    params = outpaint_params(prompt="a field", input_size=(64, 64), seed=3)

    gen = await segmind.generate(params, _png(params.input_size))

    with Image.open(io.BytesIO(gen.images[0].data)) as im:
        assert im.size == params.canvas
    assert fake_segmind.requests[0].path == api.OUTPAINT_PATH


async def test_four_samples_come_back_as_four_images(
    fake_segmind: FakeSegmind, segmind: SegmindClient
) -> None:
    gen = await segmind.generate(_img2img(samples=4), _png())

    assert len(gen.images) == 4
    assert len({i.data for i in gen.images}) == 4
    assert fake_segmind.requests[0].body == fake_segmind.requests[0].body | {"base64": True}
    assert fake_segmind.billed == 1


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
async def test_png_and_webp_results_are_accepted(fmt: Any) -> None:
    async with FakeSegmind(result_format=fmt) as fake, _client(fake.base_url, fake.api_key) as c:
        gen = await c.generate(_img2img(), _png())
    with Image.open(io.BytesIO(gen.images[0].data)) as im:
        assert im.format == fmt


@pytest.mark.parametrize("key", api.BASE64_JSON_IMAGE_KEYS)
async def test_a_json_answer_may_hold_one_image_as_a_string(
    key: str, fake_segmind: FakeSegmind, segmind: SegmindClient
) -> None:
    image = _png((512, 512))
    fake_segmind.inject(
        Respond(200, {key: "data:image/png;base64," + base64.b64encode(image).decode()})
    )

    gen = await segmind.generate(_img2img(), _png())

    assert [i.data for i in gen.images] == [image]


# --- status mapping --------------------------------------------------------------------------

# fault, error class, status, (maybe_billed, pauses, retry_safe)
_MISCONFIGURED = (False, True, False)
_DEFINITIVE = (False, False, False)
_UNKNOWN = (True, False, False)
STATUS_CASES: list[tuple[Fault, type[UpstreamError], int, tuple[bool, bool, bool]]] = [
    (Respond(401), UpstreamMisconfigured, 401, _MISCONFIGURED),
    (Respond(404), UpstreamMisconfigured, 404, _MISCONFIGURED),
    (Respond(405, METHOD_NOT_ALLOWED_HTML), UpstreamMisconfigured, 405, _MISCONFIGURED),
    (Redirect(), UpstreamMisconfigured, 302, _MISCONFIGURED),
    (Respond(406, {"error": CONTENT_TYPE_ERROR}), UpstreamMisconfigured, 406, _MISCONFIGURED),
    (Respond(406, {"error": NOT_ENOUGH_CREDITS}), UpstreamOutOfCredits, 406, _MISCONFIGURED),
    (Respond(406, {"error": "Team spend cap reached"}), UpstreamOutOfCredits, 406, _MISCONFIGURED),
    (Respond(422, {"error": "strength: too strong"}), UpstreamRejected, 422, _DEFINITIVE),
    (Respond(400), UpstreamRejected, 400, _DEFINITIVE),
    (Respond(413, "<h1>Request Entity Too Large</h1>"), UpstreamRejected, 413, _DEFINITIVE),
    (Respond(500), UpstreamServerError, 500, _UNKNOWN),
    (Respond(502, "<h1>Bad Gateway</h1>"), UpstreamServerError, 502, _UNKNOWN),
    (Respond(503), UpstreamServerError, 503, _UNKNOWN),
    (Respond(204, b""), UpstreamBadResponse, 204, _UNKNOWN),
]


@pytest.mark.parametrize(("fault", "cls", "status", "flags"), STATUS_CASES)
async def test_each_status_maps_to_its_error_and_is_not_retried(
    fault: Fault,
    cls: type[UpstreamError],
    status: int,
    flags: tuple[bool, bool, bool],
    fake_segmind: FakeSegmind,
    segmind: SegmindClient,
    sleeps: RecordedSleeps,
) -> None:
    fake_segmind.inject(fault)

    err = await _fail(segmind)

    assert type(err) is cls
    assert err.status == status
    assert (err.maybe_billed, err.pauses, err.retry_safe) == flags
    assert err.remaining_credits == START_BALANCE
    assert len(fake_segmind.requests) == 1 and sleeps.waits == []
    assert fake_segmind.billed == 0


async def test_a_wrong_key_is_a_misconfiguration(fake_segmind: FakeSegmind) -> None:
    async with _client(fake_segmind.base_url, "SG_ffffffffffffffff") as client:
        err = await _fail(client)
    assert isinstance(err, UpstreamMisconfigured) and err.status == 401


async def test_a_wrong_url_is_a_misconfiguration(fake_segmind: FakeSegmind) -> None:
    async with _client(fake_segmind.base_url + "/nope", fake_segmind.api_key) as client:
        err = await _fail(client)
    assert isinstance(err, UpstreamMisconfigured) and err.status == 404


async def test_an_html_405_gives_its_text(
    fake_segmind: FakeSegmind, segmind: SegmindClient
) -> None:
    fake_segmind.inject(Respond(405, METHOD_NOT_ALLOWED_HTML))

    err = await _fail(segmind)

    assert "405 Not Allowed" in err.detail and "<" not in err.detail


async def test_a_short_balance_is_out_of_credits() -> None:
    async with (
        FakeSegmind(balance=Decimal("0.5")) as fake,
        _client(fake.base_url, fake.api_key) as client,
    ):
        err = await _fail(client)
    assert isinstance(err, UpstreamOutOfCredits) and err.pauses
    assert err.remaining_credits == Decimal("0.5")
    assert err.detail == NOT_ENOUGH_CREDITS


async def test_a_422_names_the_field(fake_segmind: FakeSegmind, segmind: SegmindClient) -> None:
    # Bypasses the bot's own validation to reach the API's.
    bad = dataclasses.replace(_img2img(), steps=5)

    err = await _fail(segmind, bad)

    assert isinstance(err, UpstreamRejected) and err.status == 422
    assert err.detail.startswith("num_inference_steps:")
    assert "num_inference_steps" in err.user_message
    assert fake_segmind.billed == 0


@pytest.mark.parametrize("key", ["SG_0123456789abcdef", "a-key-of-another-shape"])
async def test_an_error_message_never_carries_the_key(key: str) -> None:
    async with FakeSegmind(api_key=key) as fake, _client(fake.base_url, key) as client:
        fake.inject(Respond(422, {"error": f"key {key} or SG_0000aaaa1111bbbb"}))
        err = await _fail(client)

    assert key not in err.user_message
    assert "SG_" not in err.detail and err.detail.count("[redacted]") == 2


# --- 429: wait for the reset, then retry ----------------------------------------------------


@pytest.mark.parametrize("style", ["iso", "epoch", "http"])
async def test_a_429_waits_until_its_reset_then_succeeds_with_one_charge(
    style: Any,
    fake_segmind: FakeSegmind,
    segmind: SegmindClient,
    sleeps: RecordedSleeps,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "bot.core.segmind")
    fake_segmind.inject(RateLimited(reset_header(datetime.now(UTC) + timedelta(seconds=30), style)))

    gen = await segmind.generate(_img2img(), _png())

    assert [r.status for r in fake_segmind.requests] == [429, 200]
    assert fake_segmind.billed == 1 and gen.remaining_credits == START_BALANCE - 1
    [wait] = sleeps.waits
    assert 27 < wait <= 31
    assert any("retrying" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)


@pytest.mark.parametrize(
    ("reset", "expected"),
    [
        (None, RetryPolicy.rate_limit_default_wait),
        (timedelta(seconds=-30), RetryPolicy.rate_limit_min_wait),
        (timedelta(hours=1), RetryPolicy.rate_limit_max_wait),
    ],
)
async def test_a_429_wait_has_a_default_a_floor_and_a_cap(
    reset: timedelta | None,
    expected: float,
    fake_segmind: FakeSegmind,
    segmind: SegmindClient,
    sleeps: RecordedSleeps,
) -> None:
    at = None if reset is None else reset_header(datetime.now(UTC) + reset, "iso")
    fake_segmind.inject(RateLimited(at))

    await segmind.generate(_img2img(), _png())

    assert sleeps.waits == [pytest.approx(expected, abs=0.5)]


async def test_endless_429s_give_up_after_the_retries(
    fake_segmind: FakeSegmind, segmind: SegmindClient, sleeps: RecordedSleeps
) -> None:
    reset = reset_header(datetime.now(UTC) + timedelta(seconds=10), "iso")
    fake_segmind.mode = RateLimited(reset)

    err = await _fail(segmind)

    assert isinstance(err, UpstreamRateLimited) and err.retry_safe and not err.maybe_billed
    assert err.reset_at == parse_reset_at(reset)
    assert len(fake_segmind.requests) == 1 + RetryPolicy.rate_limit_retries
    assert len(sleeps.waits) == RetryPolicy.rate_limit_retries
    assert fake_segmind.billed == 0


async def test_429_waits_stop_at_the_total_cap(fake_segmind: FakeSegmind) -> None:
    fake_segmind.mode = RateLimited()  # each wait is the 20 s default
    policy = RetryPolicy(rate_limit_total_wait=30)
    async with _client(fake_segmind.base_url, fake_segmind.api_key, retry=policy) as client:
        err = await _fail(client)
    assert isinstance(err, UpstreamRateLimited)
    assert len(fake_segmind.requests) == 2


async def test_a_429_holds_every_request_until_its_reset(
    fake_segmind: FakeSegmind, segmind: SegmindClient, sleeps: RecordedSleeps
) -> None:
    fake_segmind.inject(RateLimited())
    await segmind.generate(_img2img(), _png())
    # The fake sleep returned at once, so the account is still "rate limited" for this one.
    await segmind.generate(_img2img(), _png())

    assert len(sleeps.waits) == 2 and all(w > 19 for w in sleeps.waits)
    assert [r.status for r in fake_segmind.requests] == [429, 200, 200]


async def test_a_retry_takes_a_new_rate_token(fake_segmind: FakeSegmind) -> None:
    fake_segmind.inject(RateLimited())
    rate = {"requests_per_minute": 1, "rate_window": 0.3}  # one request per 0.3 s, no burst
    async with _client(fake_segmind.base_url, fake_segmind.api_key, **rate) as client:
        await client.generate(_img2img(), _png())
    first, second = fake_segmind.requests
    assert second.at - first.at >= 0.25


# --- connection failures: retried only before anything was sent -----------------------------


async def test_a_refused_connection_is_retried_then_succeeds_with_one_charge() -> None:
    port = _free_port()
    fake = FakeSegmind(port=port)
    waits: list[float] = []

    async def start_upstream_while_waiting(seconds: float) -> None:
        waits.append(seconds)
        await fake.start()

    try:
        client = _client(
            f"http://127.0.0.1:{port}", fake.api_key, sleep=start_upstream_while_waiting
        )
        async with client:
            gen = await client.generate(_img2img(), _png())
    finally:
        await fake.close()

    assert len(waits) == 1 and 0.5 <= waits[0] <= 1.0  # the first backoff step, jittered
    assert fake.billed == 1 and len(fake.requests) == 1
    assert gen.remaining_credits == START_BALANCE - 1


async def test_a_host_that_stays_down_gives_up_after_three_attempts() -> None:
    sleeps = RecordedSleeps()
    async with _client(
        f"http://127.0.0.1:{_free_port()}", "SG_0123456789abcdef", sleep=sleeps
    ) as c:
        err = await _fail(c)
    assert isinstance(err, UpstreamUnreachable)
    assert err.retry_safe and not err.maybe_billed and err.remaining_credits is None
    assert len(sleeps.waits) == 2
    assert 0.5 <= sleeps.waits[0] <= 1.0 and 1.0 <= sleeps.waits[1] <= 2.0


# --- outcome unknown: never retried ----------------------------------------------------------


async def test_a_timeout_after_sending_is_not_retried(fake_segmind: FakeSegmind) -> None:
    fake_segmind.inject(Hang())
    sleeps = RecordedSleeps()
    client = _client(fake_segmind.base_url, fake_segmind.api_key, timeout_total=0.3, sleep=sleeps)
    async with client:
        err = await _fail(client)
    assert isinstance(err, UpstreamTimeout) and err.maybe_billed and not err.retry_safe
    assert len(fake_segmind.requests) == 1 and sleeps.waits == []


@pytest.mark.parametrize("after_billing", [False, True])
async def test_a_dropped_connection_is_not_retried(
    after_billing: bool, fake_segmind: FakeSegmind, segmind: SegmindClient
) -> None:
    fake_segmind.inject(Drop(after_billing=after_billing))

    err = await _fail(segmind)

    assert isinstance(err, UpstreamDisconnected) and err.maybe_billed
    assert len(fake_segmind.requests) == 1
    assert fake_segmind.billed == int(after_billing)  # the stand-in did charge this one


@pytest.mark.parametrize("fault", [Garbage(), Truncated()])
async def test_a_broken_200_is_a_bad_response_that_was_billed(
    fault: Fault, fake_segmind: FakeSegmind, segmind: SegmindClient
) -> None:
    fake_segmind.inject(fault)

    err = await _fail(segmind)

    assert isinstance(err, UpstreamBadResponse) and err.maybe_billed and err.status == 200
    assert err.remaining_credits == START_BALANCE - 1 and fake_segmind.billed == 1


@pytest.mark.parametrize(
    "body",
    [
        {"images": []},
        {"images": ["%%% not base64"]},
        {"images": [base64.b64encode(b"not an image").decode()]},
        {"unexpected": "shape"},
        b"{ not json",
    ],
)
async def test_a_bad_json_answer_is_a_bad_response(
    body: Any, fake_segmind: FakeSegmind, segmind: SegmindClient
) -> None:
    fake_segmind.inject(Respond(200, body))

    assert isinstance(await _fail(segmind), UpstreamBadResponse)


async def test_a_result_over_the_size_cap_is_refused(fake_segmind: FakeSegmind) -> None:
    async with _client(fake_segmind.base_url, fake_segmind.api_key, max_result_bytes=1000) as c:
        err = await _fail(c)
    assert isinstance(err, UpstreamBadResponse) and "larger than 1000" in err.detail


# --- redirects -------------------------------------------------------------------------------


async def test_a_redirect_is_refused_and_the_key_stays_home(
    fake_segmind: FakeSegmind, segmind: SegmindClient
) -> None:
    fake_segmind.inject(Redirect())

    err = await _fail(segmind)

    assert isinstance(err, UpstreamMisconfigured) and err.status == 302
    assert fake_segmind.redirect_hits == [] and not fake_segmind.key_leaked


async def test_a_caller_supplied_session_still_refuses_redirects(fake_segmind: FakeSegmind) -> None:
    fake_segmind.inject(Redirect())
    async with aiohttp.ClientSession() as session:
        async with _client(fake_segmind.base_url, fake_segmind.api_key, session=session) as c:
            err = await _fail(c)
        assert not session.closed  # not the client's to close
    assert isinstance(err, UpstreamMisconfigured) and not fake_segmind.key_leaked


# --- remaining credits -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "abc", "NaN", "", "1" * 100])
async def test_a_missing_or_malformed_balance_is_none_and_keeps_the_last_one(
    value: str | None, fake_segmind: FakeSegmind, segmind: SegmindClient
) -> None:
    await segmind.generate(_img2img(), _png())
    fake_segmind.inject(CreditsHeader(value))

    gen = await segmind.generate(_img2img(), _png())

    assert gen.remaining_credits is None
    assert segmind.last_remaining_credits == START_BALANCE - 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12.5", Decimal("12.5")),
        (" 7 ", Decimal(7)),
        ("0", Decimal(0)),
        ("-3.25", Decimal("-3.25")),
        ("1e3", Decimal(1000)),
        ("Infinity", None),
        ("sNaN", None),
        ("12,5", None),
        (None, None),
    ],
)
def test_parse_credits(value: str | None, expected: Decimal | None) -> None:
    assert parse_credits(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-27T21:00:00Z", datetime(2026, 11, 27, 21, tzinfo=UTC)),
        ("2026-11-27T21:00:00", datetime(2026, 11, 27, 21, tzinfo=UTC)),
        ("2026-11-27T22:00:00+01:00", datetime(2026, 11, 27, 21, tzinfo=UTC)),
        ("2026-11-27 21:00:00.5", datetime(2026, 11, 27, 21, 0, 0, 500000, tzinfo=UTC)),
        ("1795813200", datetime(2026, 11, 27, 21, tzinfo=UTC)),
        ("1795813200000", datetime(2026, 11, 27, 21, tzinfo=UTC)),
        ("1795813200.5", datetime(2026, 11, 27, 21, 0, 0, 500000, tzinfo=UTC)),
        ("Fri, 27 Nov 2026 21:00:00 GMT", datetime(2026, 11, 27, 21, tzinfo=UTC)),
        ("soon", None),
        ("2026-13-45T99:00:00Z", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_reset_at(value: str | None, expected: datetime | None) -> None:
    assert parse_reset_at(value) == expected


# --- transport failures ----------------------------------------------------------------------

_KEY = ConnectionKey("api.example", 443, True, True, None, None, None, None)


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (
            aiohttp.ClientConnectorError(_KEY, ConnectionRefusedError(111, "no")),
            UpstreamUnreachable,
        ),
        (aiohttp.ClientConnectorDNSError(_KEY, OSError(-2, "no such host")), UpstreamUnreachable),
        (aiohttp.ConnectionTimeoutError("connect"), UpstreamUnreachable),
        (aiohttp.SocketTimeoutError("read"), UpstreamTimeout),
        (TimeoutError(), UpstreamTimeout),
        (aiohttp.ServerDisconnectedError(), UpstreamDisconnected),
        (aiohttp.ClientPayloadError("cut short"), UpstreamDisconnected),
        (aiohttp.ClientOSError(104, "reset by peer"), UpstreamDisconnected),
        (aiohttp.ClientConnectionResetError("closing transport"), UpstreamDisconnected),
        (aiohttp.InvalidURL("not a url"), UpstreamMisconfigured),
        (aiohttp.ClientError("anything else"), UpstreamBadResponse),
    ],
)
def test_transport_failures_map_to_what_may_have_been_sent(
    exc: Exception, cls: type[UpstreamError]
) -> None:
    err = _transport_error(exc, None, Decimal(5), _Secret("SG_0123456789abcdef"))
    assert type(err) is cls and err.remaining_credits == Decimal(5)


# --- limits ----------------------------------------------------------------------------------


async def test_never_more_than_max_concurrency_in_flight() -> None:
    async with (
        FakeSegmind(latency=0.1) as fake,
        _client(fake.base_url, fake.api_key, max_concurrency=2) as client,
    ):
        gens = await asyncio.gather(*(client.generate(_img2img(), _png()) for _ in range(6)))
    assert len(gens) == 6 and fake.billed == 6
    assert fake.max_in_flight == 2


async def test_the_rate_limiter_spaces_requests_after_a_burst(fake_segmind: FakeSegmind) -> None:
    # A burst of 3, then one every 0.2 s: 7 requests need at least 4 × 0.2 s. Only lower
    # bounds are asserted, so a slow machine cannot fail this.
    rate = {"requests_per_minute": 3, "rate_window": 0.6, "max_concurrency": 10}
    async with _client(fake_segmind.base_url, fake_segmind.api_key, **rate) as client:
        await asyncio.gather(*(client.generate(_img2img(), _png()) for _ in range(7)))
    arrivals = sorted(r.at for r in fake_segmind.requests)
    assert arrivals[-1] - arrivals[0] >= 4 * 0.2 * 0.9
    # Every 4 consecutive requests span at least one token's worth of time.
    assert all(b - a >= 0.2 * 0.9 for a, b in zip(arrivals, arrivals[3:], strict=False))


# --- check_key -------------------------------------------------------------------------------


async def test_check_key_returns_the_balance_without_paying(
    fake_segmind: FakeSegmind, segmind: SegmindClient
) -> None:
    assert await segmind.check_key() == START_BALANCE
    assert fake_segmind.billed == 0 and fake_segmind.requests[0].status == 422


async def test_check_key_raises_for_a_bad_key(fake_segmind: FakeSegmind) -> None:
    async with _client(fake_segmind.base_url, "SG_ffffffffffffffff") as client:
        with pytest.raises(UpstreamMisconfigured):
            await client.check_key()


async def test_from_settings(fake_segmind: FakeSegmind) -> None:
    settings = Settings(
        segmind_api_key=fake_segmind.api_key, segmind_base_url=fake_segmind.base_url
    )
    async with SegmindClient.from_settings(settings) as client:
        assert await client.check_key() == START_BALANCE


# --- the key stays secret --------------------------------------------------------------------


async def test_the_key_never_appears_in_logs_errors_or_reprs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    failures: list[BaseException] = []
    async with FakeSegmind() as fake:
        key = fake.api_key
        fake.inject(
            Respond(401, {"error": f"bad key {key}"}),
            Respond(500, f"<p>{key}</p>"),
            Redirect(),
            Drop(after_billing=True),
            Garbage(),
            Hang(),
            RateLimited(),
        )
        async with _client(fake.base_url, key, timeout_total=0.3) as client:
            for _ in range(6):
                failures.append(await _fail(client))
            gen = await client.generate(_img2img(), _png())  # after the 429
            texts = [repr(client), repr(vars(client)), repr(gen)]
        async with _client(f"http://127.0.0.1:{_free_port()}", key) as down:
            failures.append(await _fail(down))

    for err in failures:
        texts += [str(err), repr(err), err.user_message, *traceback.format_exception(err)]
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts += traceback.format_exception(*record.exc_info)
    assert len(failures) == 7 and caplog.records
    assert not [t for t in texts if key in t]
