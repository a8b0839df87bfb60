"""The Segmind stand-in enforces the documented contract and injects faults as promised.

These tests talk to it with a bare aiohttp session, not the bot's client, so that a bug in
the client cannot hide a bug in the stand-in.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.core import upstream_api as api
from bot.core.params import img2img_params, outpaint_params
from tests.standins.fake_segmind import (
    CONTENT_TYPE_ERROR,
    NOT_ENOUGH_CREDITS,
    CreditsHeader,
    Delay,
    Drop,
    FakeSegmind,
    Garbage,
    Hang,
    RateLimited,
    Redirect,
    Respond,
    Truncated,
)

RED = (255, 0, 0)


def _b64_png(size: tuple[int, int] = (64, 64), colour: tuple[int, int, int] = RED) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def img2img_body(**changes: Any) -> dict[str, Any]:
    body = {
        "image": _b64_png(),
        "prompt": "a cat",
        "negative_prompt": "blurry",
        "samples": 1,
        "scheduler": "DDIM",
        "num_inference_steps": 20,
        "guidance_scale": 7.5,
        "strength": 0.5,
        "seed": 1,
        "img_width": 512,
        "img_height": 768,
        "base64": False,
    }
    return body | changes


def outpaint_body(**changes: Any) -> dict[str, Any]:
    body = {
        "image": _b64_png(),
        "prompt": "a field",
        "scheduler": "DDIM",
        "num_inference_steps": 25,
        "img_width": 1024,
        "img_height": 768,
        "scale": 2,
        "strength": 1,
        "offset_x": 100,
        "offset_y": 50,
        "guidance_scale": 7.5,
        "mask_expand": 8,
        "seed": 1,
    }
    return body | changes


class Api:
    """A bare HTTP client of the stand-in."""

    def __init__(self, fake_segmind: FakeSegmind, session: aiohttp.ClientSession) -> None:
        self.fake_segmind = fake_segmind
        self.session = session

    async def call(
        self,
        body: Mapping[str, Any] | bytes | None = None,
        *,
        path: str = api.IMG2IMG_PATH,
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        **options: Any,
    ) -> tuple[int, Mapping[str, str], bytes]:
        data = (
            body
            if isinstance(body, bytes)
            else json.dumps(img2img_body() if body is None else body)
        )
        sent = {api.API_KEY_HEADER: self.fake_segmind.api_key, "Content-Type": "application/json"}
        async with self.session.request(
            method,
            self.fake_segmind.base_url + path,
            data=data,
            headers=sent | dict(headers or {}),
            **options,
        ) as resp:
            return resp.status, resp.headers, await resp.read()


@pytest.fixture
async def fake_segmind() -> AsyncIterator[FakeSegmind]:
    async with FakeSegmind(balance=Decimal(100)) as fake:
        yield fake


@pytest.fixture
async def http(fake_segmind: FakeSegmind) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(fake_segmind, session)


def _image(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def _error(data: bytes) -> str:
    message: str = json.loads(data)["error"]
    return message


# --- the happy path --------------------------------------------------------------------------


async def test_img2img_answers_an_image_of_the_requested_size_and_charges(
    fake_segmind: FakeSegmind, http: Api
) -> None:
    status, headers, data = await http.call()

    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert (_image(data).format, _image(data).size) == ("JPEG", (512, 768))
    assert headers[api.REMAINING_CREDITS_HEADER] == "99"
    assert fake_segmind.balance == 99 and fake_segmind.billed == 1


async def test_the_same_seed_gives_the_same_bytes(http: Api) -> None:
    first = await http.call(img2img_body(seed=5))
    again = await http.call(img2img_body(seed=5))
    other = await http.call(img2img_body(seed=6))
    random_seed = await http.call(img2img_body(seed=-1))

    assert first[2] == again[2] != other[2]
    assert random_seed[0] == 200


async def test_outpaint_draws_the_input_on_the_canvas() -> None:
    async with FakeSegmind(result_format="PNG") as fake, aiohttp.ClientSession() as session:
        status, _, data = await Api(fake, session).call(outpaint_body(), path=api.OUTPAINT_PATH)
    canvas = _image(data)
    assert status == 200 and canvas.size == (1024, 768)
    # The 64×64 input at scale 2 covers (100, 50)–(228, 178); the rest is the fill colour.
    assert canvas.getpixel((101, 51)) == canvas.getpixel((227, 177)) == RED
    assert canvas.getpixel((99, 51)) == canvas.getpixel((229, 100)) == canvas.getpixel((0, 0))
    assert canvas.getpixel((0, 0)) != RED


async def test_outpaint_bounds_a_huge_scale_to_the_canvas(http: Api) -> None:
    body = outpaint_body(scale=10, offset_x=1000, offset_y=0, img_width=1024, img_height=1024)
    status, _, data = await http.call(body, path=api.OUTPAINT_PATH)
    assert status == 200 and _image(data).size == (1024, 1024)


async def test_base64_answers_json_with_every_sample(fake_segmind: FakeSegmind, http: Api) -> None:
    status, headers, data = await http.call(img2img_body(samples=3, base64=True))

    assert status == 200 and headers["Content-Type"] == "application/json"
    images = json.loads(data)[api.BASE64_JSON_IMAGE_KEYS[0]]
    decoded = [_image(base64.b64decode(i)) for i in images]
    assert [im.size for im in decoded] == [(512, 768)] * 3
    assert len(set(images)) == 3 and fake_segmind.billed == 1


@pytest.mark.parametrize(("fmt", "magic"), [("PNG", b"\x89PNG"), ("WEBP", b"RIFF")])
async def test_result_format_is_selectable(fmt: Any, magic: bytes) -> None:
    async with FakeSegmind(result_format=fmt) as fake, aiohttp.ClientSession() as session:
        _, headers, data = await Api(fake, session).call()
    assert data.startswith(magic) and headers["Content-Type"] == f"image/{fmt.lower()}"


async def test_the_bots_own_payloads_are_accepted(fake_segmind: FakeSegmind, http: Api) -> None:
    image = _b64_png()
    payloads = [
        img2img_params(prompt="a", input_size=(64, 64)).payload(image),
        img2img_params(prompt="a", input_size=(64, 128), samples=4, steps=100).payload(image),
        img2img_params(prompt="a", input_size=(64, 64), negative_prompt="b", guidance=25).payload(
            image
        ),
    ]
    for direction in ("zoom_out", "left", "up"):
        params = outpaint_params(prompt="a", input_size=(64, 64), direction=direction)
        payloads.append(params.payload(_b64_png(params.input_size)))

    for payload, path in zip(
        payloads, [api.IMG2IMG_PATH] * 3 + [api.OUTPAINT_PATH] * 3, strict=True
    ):
        status, _, data = await http.call(payload, path=path)
        assert status == 200, data[:200]
    assert fake_segmind.billed == 6


# --- the contract's refusals -----------------------------------------------------------------


async def test_an_unknown_path_is_a_json_404(fake_segmind: FakeSegmind, http: Api) -> None:
    status, headers, data = await http.call(path="/v1/sd1.5-nope")
    assert status == 404 and _error(data)
    assert headers[api.REMAINING_CREDITS_HEADER] == "100" and fake_segmind.billed == 0


async def test_a_wrong_method_is_an_html_405(fake_segmind: FakeSegmind, http: Api) -> None:
    status, headers, data = await http.call(method="GET")
    assert status == 405 and headers["Content-Type"].startswith("text/html")
    assert data.startswith(b"<html>") and api.REMAINING_CREDITS_HEADER in headers


@pytest.mark.parametrize(
    "headers",
    [
        {api.API_KEY_HEADER: ""},
        {api.API_KEY_HEADER: "SG_ffffffffffffffff"},
        {api.API_KEY_HEADER: "", "Authorization": "Bearer SG_0123456789abcdef"},
    ],
)
async def test_only_the_right_x_api_key_is_accepted(
    headers: dict[str, str], fake_segmind: FakeSegmind, http: Api
) -> None:
    status, answer_headers, data = await http.call(headers=headers)
    assert status == 401 and _error(data)
    assert answer_headers[api.REMAINING_CREDITS_HEADER] == "100" and fake_segmind.billed == 0


async def test_a_wrong_content_type_is_a_406_about_it(fake_segmind: FakeSegmind, http: Api) -> None:
    status, _, data = await http.call(headers={"Content-Type": "text/plain"})
    assert status == 406 and _error(data) == CONTENT_TYPE_ERROR and fake_segmind.billed == 0


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b""])
async def test_a_body_that_is_not_a_json_object_is_a_422(raw: bytes, http: Api) -> None:
    status, _, _ = await http.call(raw)
    assert status == 422


_IMG2IMG_BAD = [
    ("samples", api.IMG2IMG_SAMPLES.high + 1),
    ("samples", api.IMG2IMG_SAMPLES.low - 1),
    ("samples", 2.5),
    ("num_inference_steps", api.IMG2IMG_STEPS.low - 1),
    ("num_inference_steps", api.IMG2IMG_STEPS.high + 1),
    ("guidance_scale", api.IMG2IMG_GUIDANCE.low / 2),
    ("guidance_scale", api.IMG2IMG_GUIDANCE.high + 0.5),
    ("strength", 0),
    ("strength", "0.5"),
    ("img_width", 640),
    ("img_height", 1024),
    ("scheduler", "Nope"),
    ("seed", -2),
    ("seed", True),
    ("base64", "yes"),
    ("prompt", ""),
    ("prompt", "x" * (api.PROMPT_MAX_CHARS + 1)),
    ("negative_prompt", 5),
    ("image", ""),
    ("image", "%%% not base64 %%%"),
    ("image", base64.b64encode(b"not an image").decode()),
    ("steps", 20),  # an unknown field: the stand-in is strict
]
_OUTPAINT_BAD = [
    ("num_inference_steps", api.OUTPAINT_STEPS.low - 1),
    ("scale", api.OUTPAINT_SCALE.low / 2),
    ("scale", api.OUTPAINT_SCALE.high + 1),
    ("offset_x", api.OUTPAINT_OFFSET.low - 1),
    ("offset_y", api.OUTPAINT_OFFSET.high + 1),
    ("mask_expand", api.OUTPAINT_MASK_EXPAND.high + 1),
    ("img_width", api.IMG2IMG_SIDES[0]),
    ("guidance_scale", api.OUTPAINT_GUIDANCE.high + 1),
    ("strength", api.OUTPAINT_STRENGTH.high + 0.1),
    ("samples", 1),  # img2img only
    ("base64", True),  # img2img only
]


@pytest.mark.parametrize(
    ("path", "field", "value"),
    [(api.IMG2IMG_PATH, f, v) for f, v in _IMG2IMG_BAD]
    + [(api.OUTPAINT_PATH, f, v) for f, v in _OUTPAINT_BAD],
)
async def test_every_range_and_allowed_value_is_enforced(
    path: str, field: str, value: Any, fake_segmind: FakeSegmind, http: Api
) -> None:
    body = (img2img_body if path == api.IMG2IMG_PATH else outpaint_body)(**{field: value})

    status, _, data = await http.call(body, path=path)

    assert status == 422 and _error(data).startswith(f"{field}:")
    assert fake_segmind.billed == 0


@pytest.mark.parametrize("field", ["image", "prompt"])
async def test_image_and_prompt_are_required(field: str, http: Api) -> None:
    body = img2img_body()
    del body[field]
    status, _, data = await http.call(body)
    assert status == 422 and _error(data) == f"{field}: field required"


async def test_unknown_fields_pass_when_not_strict() -> None:
    async with FakeSegmind(strict_fields=False) as fake, aiohttp.ClientSession() as session:
        status, _, _ = await Api(fake, session).call(img2img_body(steps=20))
    assert status == 200


# --- the account -----------------------------------------------------------------------------


async def test_a_short_balance_is_a_406_and_nothing_is_charged() -> None:
    async with FakeSegmind(balance=Decimal("1.5")) as fake, aiohttp.ClientSession() as session:
        http = Api(fake, session)
        first = await http.call()
        second = await http.call()
    assert first[0] == 200 and first[1][api.REMAINING_CREDITS_HEADER] == "0.5"
    assert second[0] == 406 and _error(second[2]) == NOT_ENOUGH_CREDITS
    assert second[1][api.REMAINING_CREDITS_HEADER] == "0.5"
    assert fake.billed == 1 and fake.balance == Decimal("0.5")


async def test_the_price_can_depend_on_the_request() -> None:
    def price(path: str, body: Mapping[str, Any]) -> Decimal:
        return Decimal("0.25") * body.get("samples", 1)

    async with FakeSegmind(balance=Decimal(10), price=price) as fake, aiohttp.ClientSession() as s:
        await Api(fake, s).call(img2img_body(samples=4, base64=True))
    assert fake.balance == 9


# --- records ---------------------------------------------------------------------------------


async def test_requests_are_recorded_without_the_key_or_the_image(
    fake_segmind: FakeSegmind, http: Api
) -> None:
    await http.call()
    await http.call(headers={"Authorization": f"Bearer {fake_segmind.api_key}"})

    first, second = fake_segmind.requests
    assert first.method == "POST" and first.path == api.IMG2IMG_PATH and first.status == 200
    assert first.body == {k: v for k, v in img2img_body().items() if k != "image"}
    assert first.carried_key and first.at <= second.at
    for record in fake_segmind.requests:
        assert api.API_KEY_HEADER not in {h.lower() for h in record.headers}
        assert "Authorization" not in record.headers
        assert fake_segmind.api_key not in repr(record)


async def test_in_flight_requests_are_counted() -> None:
    async with FakeSegmind(latency=0.1) as fake, aiohttp.ClientSession() as session:
        http = Api(fake, session)
        await asyncio.gather(*(http.call() for _ in range(3)))
    assert fake.max_in_flight == 3 and fake.in_flight == 0


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "content_type", "body"),
    [
        (Respond(500), "application/json", b'{"error": "injected 500"}'),
        (Respond(503, {"error": "down"}), "application/json", b'{"error": "down"}'),
        (Respond(405, "<html>no</html>"), "text/html", b"<html>no</html>"),
        (Respond(200, b"\x00\x01"), "application/octet-stream", b"\x00\x01"),
    ],
)
async def test_respond_answers_what_it_is_told_without_charging(
    fault: Respond, content_type: str, body: bytes, fake_segmind: FakeSegmind, http: Api
) -> None:
    fake_segmind.inject(fault)
    status, headers, data = await http.call()
    assert (status, data) == (fault.status, body)
    assert headers["Content-Type"].startswith(content_type)
    assert headers[api.REMAINING_CREDITS_HEADER] == "100" and fake_segmind.billed == 0


async def test_respond_can_add_headers(fake_segmind: FakeSegmind, http: Api) -> None:
    fake_segmind.inject(Respond(500, headers={"X-Extra": "1"}))
    _, headers, _ = await http.call()
    assert headers["X-Extra"] == "1"


@pytest.mark.parametrize("reset_at", [None, "2026-11-27T21:00:00Z"])
async def test_rate_limited_is_a_429_with_its_reset_header(
    reset_at: str | None, fake_segmind: FakeSegmind, http: Api
) -> None:
    fake_segmind.inject(RateLimited(reset_at))
    status, headers, _ = await http.call()
    assert status == 429 and headers.get(api.RATE_LIMIT_RESET_HEADER) == reset_at
    assert fake_segmind.billed == 0


async def test_faults_apply_in_order_then_the_mode(fake_segmind: FakeSegmind, http: Api) -> None:
    fake_segmind.inject(Respond(500), Respond(502))
    fake_segmind.mode = Respond(503)
    statuses = [(await http.call())[0] for _ in range(4)]
    fake_segmind.mode = None
    statuses.append((await http.call())[0])
    assert statuses == [500, 502, 503, 503, 200]


async def test_a_hang_never_answers_and_closing_releases_it() -> None:
    fake = FakeSegmind()
    await fake.start()
    fake.inject(Hang())
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TimeoutError):
            await Api(fake, session).call(timeout=aiohttp.ClientTimeout(total=0.2))
    started = time.monotonic()
    await fake.close()
    assert time.monotonic() - started < 1.0
    assert [r.status for r in fake.requests] == [None] and fake.billed == 0


async def test_closing_cuts_a_long_latency_short() -> None:
    fake = FakeSegmind(latency=30)
    await fake.start()
    async with aiohttp.ClientSession() as session:
        call = asyncio.create_task(Api(fake, session).call())
        await fake.wait_for_requests(1)
        started = time.monotonic()
        await fake.close()
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await call
    assert time.monotonic() - started < 1.5 and fake.billed == 0


async def test_a_delay_answers_late_but_normally(fake_segmind: FakeSegmind, http: Api) -> None:
    fake_segmind.inject(Delay(0.2))
    started = time.monotonic()
    status, _, _ = await http.call()
    assert status == 200 and time.monotonic() - started >= 0.2 and fake_segmind.billed == 1


@pytest.mark.parametrize("after_billing", [False, True])
async def test_a_drop_closes_the_connection_before_or_after_billing(
    after_billing: bool, fake_segmind: FakeSegmind, http: Api
) -> None:
    fake_segmind.inject(Drop(after_billing=after_billing))
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await http.call()
    assert fake_segmind.billed == int(after_billing) and fake_segmind.balance == 100 - int(
        after_billing
    )
    assert fake_segmind.requests[0].status is None


async def test_garbage_is_a_billed_200_that_is_not_an_image(
    fake_segmind: FakeSegmind, http: Api
) -> None:
    fake_segmind.inject(Garbage())
    status, headers, data = await http.call()
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and fake_segmind.billed == 1
    with pytest.raises(OSError):
        _image(data)


async def test_truncated_is_a_billed_200_whose_jpeg_does_not_decode(
    fake_segmind: FakeSegmind, http: Api
) -> None:
    fake_segmind.inject(Truncated())
    status, _, data = await http.call()
    assert status == 200 and data.startswith(b"\xff\xd8\xff") and fake_segmind.billed == 1
    with pytest.raises(OSError):
        _image(data)


async def test_faults_that_alter_a_success_leave_a_failure_alone(
    fake_segmind: FakeSegmind, http: Api
) -> None:
    fake_segmind.inject(Garbage())
    status, _, data = await http.call(img2img_body(samples=9))
    assert status == 422 and _error(data).startswith("samples:")


async def test_a_redirect_target_records_whether_it_got_the_key(
    fake_segmind: FakeSegmind, http: Api
) -> None:
    fake_segmind.inject(Redirect(), Redirect())
    status, headers, _ = await http.call(allow_redirects=False)
    assert status == 302 and headers["Location"].endswith(api.IMG2IMG_PATH)
    assert fake_segmind.redirect_hits == [] and not fake_segmind.key_leaked

    # Negative control: a client that follows redirects leaks a custom key header.
    await http.call(allow_redirects=True)
    assert len(fake_segmind.redirect_hits) == 1 and fake_segmind.key_leaked
    assert fake_segmind.api_key not in repr(fake_segmind.redirect_hits)


@pytest.mark.parametrize("value", [None, "not-a-number"])
async def test_the_credits_header_can_be_left_out_or_malformed(
    value: str | None, fake_segmind: FakeSegmind, http: Api
) -> None:
    fake_segmind.inject(CreditsHeader(value))
    status, headers, _ = await http.call()
    assert status == 200 and headers.get(api.REMAINING_CREDITS_HEADER) == value
    assert fake_segmind.billed == 1
