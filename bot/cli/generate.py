"""``sdbot img2img`` and ``sdbot outpaint``: one generation straight against the API, no
Discord and no ledger — to test a key or settings. Same validation and image pipeline as the
bot."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from bot.config import load_settings
from bot.core import upstream_api as api
from bot.core.errors import ImageTooLarge, SdbotError
from bot.core.images import ImageLimits
from bot.core.jobs import prepare
from bot.core.params import JobParams, format_size, img2img_params, outpaint_params
from bot.core.presets import Direction
from bot.core.pricing import job_cost
from bot.core.segmind import SegmindClient


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", required=True, type=Path, help="input image file")
    parser.add_argument("--prompt", required=True, help="what the result should show")
    parser.add_argument("--out", required=True, type=Path, help="directory for the result(s)")
    parser.add_argument("--negative-prompt", help="what to avoid")
    parser.add_argument("--scheduler", choices=api.SCHEDULERS, help="sampler (default DDIM)")
    parser.add_argument("--seed", type=int, help="seed (default random; printed)")
    parser.add_argument("--guidance", type=float, help="0.1 to 25 (default 7.5)")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    i2i = subparsers.add_parser(
        "img2img",
        help="transform one image with the API (no Discord)",
        description="Run one img2img generation against SEGMIND_BASE_URL and save the result.",
    )
    _common(i2i)
    i2i.add_argument("--strength", type=float, help="0.1 to 1 (default 0.75)")
    i2i.add_argument("--steps", type=int, help="20 to 100 (default 25)")
    i2i.add_argument("--samples", type=int, help="1 to 4 images (default 1)")
    i2i.add_argument(
        "--size",
        choices=[format_size(s) for s in api.IMG2IMG_SIZES],
        help="output size (default: closest to the input's shape)",
    )
    i2i.set_defaults(func=run_generation, kind="img2img")

    out = subparsers.add_parser(
        "outpaint",
        help="extend one image with the API (no Discord)",
        description="Run one outpaint generation against SEGMIND_BASE_URL and save the result.",
    )
    _common(out)
    out.add_argument("--direction", choices=[d.value for d in Direction], help="default zoom_out")
    out.add_argument("--canvas", choices=[format_size(s) for s in api.OUTPAINT_CANVASES])
    out.add_argument("--offset-x", type=int, help="custom only: 0 to 1024")
    out.add_argument("--offset-y", type=int, help="custom only: 0 to 1024")
    out.add_argument("--scale", type=float, help="custom only: 0.1 to 10")
    out.add_argument("--mask-expand", type=int, help="0 to 256 (default 8)")
    out.add_argument("--steps", type=int, help="25 to 100 (default 25)")
    out.add_argument("--strength", type=float, help="0.1 to 1 (default 1)")
    out.set_defaults(func=run_generation, kind="outpaint")


def _params(args: argparse.Namespace, input_size: tuple[int, int]) -> JobParams:
    common = {
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "scheduler": args.scheduler,
        "seed": args.seed,
        "guidance": args.guidance,
        "strength": args.strength,
        "steps": args.steps,
        "input_size": input_size,
    }
    if args.kind == "img2img":
        return img2img_params(samples=args.samples, size=args.size, **common)
    return outpaint_params(
        direction=args.direction,
        canvas=args.canvas,
        offset_x=args.offset_x,
        offset_y=args.offset_y,
        scale=args.scale,
        mask_expand=args.mask_expand,
        **common,
    )


def run_generation(args: argparse.Namespace) -> int:
    return asyncio.run(_generate(args))


async def _generate(args: argparse.Namespace) -> int:
    settings = load_settings()
    settings.require_api_key()
    limits = ImageLimits(
        max_bytes=settings.max_image_bytes,
        max_pixels=settings.max_image_pixels,
        max_side=settings.max_image_side,
    )
    _params(args, (512, 512))  # refuse bad options before reading the image
    try:
        if args.image.stat().st_size > limits.max_bytes:
            raise ImageTooLarge(limits.max_bytes)
        data = args.image.read_bytes()
    except OSError as error:
        raise SdbotError(f"cannot read {args.image}: {error.strerror}") from None
    params, request_image = await prepare(data, limits, lambda size: _params(args, size))
    cost = job_cost(params, settings.prices)
    async with SegmindClient.from_settings(settings) as client:
        generation = await client.generate(params, request_image)
    args.out.mkdir(parents=True, exist_ok=True)
    for n, result in enumerate(generation.images):
        path = args.out / f"{params.kind.value}-{params.seed}-{n}.{result.extension}"
        path.write_bytes(result.data)
        print(f"wrote {path} ({result.size[0]}x{result.size[1]} {result.format})")
    remaining = generation.remaining_credits
    print(f"seed: {params.seed}")
    print(f"cost: {cost.credits} credits (≈ {cost.account} on the account)")
    print(f"remaining account credits: {'unknown' if remaining is None else remaining}")
    print(f"took: {generation.elapsed:.1f} s")
    return 0
