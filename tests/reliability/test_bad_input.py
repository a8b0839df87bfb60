"""Hostile input over the wire: each is refused with its own message, costs nothing, and
nothing reaches the paid API."""

from __future__ import annotations

import pytest

from bot.core.images import ImageLimits
from tests import imagecorpus as corpus
from tests.harness import World, png
from tests.standins.fake_discord import Upload

CASES = {
    "empty": (b"", "empty"),
    "text-named-png": (b"hello, I am not an image", "not a PNG"),
    "tiff": (corpus.tiff(), "not a PNG"),
    "truncated-png": (corpus.truncated(corpus.png((300, 300)), 0.5), "damaged"),
    "truncated-jpeg": (corpus.truncated(corpus.noisy_jpeg(), 0.5), "damaged"),
    "bomb-30000": (corpus.png_declaring(30000, 30000), "megapixels"),
    "strip-10000x100": (corpus.png((10000, 100)), "too long and thin"),
    "tiny-1x1": (corpus.png((1, 1)), "at least 64"),
    "animated-gif": (corpus.animated_gif(), "Animated"),
    "animated-webp": (corpus.animated_webp(), "Animated"),
    "apng": (corpus.apng(), "Animated"),
}


async def refused(world: World, it, needle: str) -> None:  # type: ignore[no-untyped-def]
    await world.ephemeral_text(it, needle)
    assert it.original is not None and it.original.ephemeral
    assert world.segmind.requests == []
    assert await world.balance(world.alice) == (100, 0, 0)
    assert world.results() == []


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_image_corpus(world: World, case: str) -> None:
    data, needle = CASES[case]
    it = await world.discord.slash(
        world.alice, world.channel, "img2img", image=(f"{case}.png", data), prompt="x"
    )
    await refused(world, it, needle)


async def test_odd_but_valid_images_are_accepted(world: World) -> None:
    for name, data in [("cmyk.jpg", corpus.cmyk_jpeg()), ("phone.jpg", corpus.mpo())]:
        it = await world.discord.slash(
            world.alice, world.channel, "outpaint", image=(name, data), prompt="x"
        )
        await world.result_for(it)


async def test_a_small_declared_size_does_not_let_a_large_file_through(world: World) -> None:
    big = corpus.noisy_jpeg((3000, 3000))
    assert len(big) > 1_000_000
    world.bot.get_cog("Generation").limits = ImageLimits(max_bytes=1_000_000)  # type: ignore[union-attr]
    it = await world.discord.slash(
        world.alice, world.channel, "img2img", image=Upload("big.jpg", big, size=1000), prompt="x"
    )
    await refused(world, it, "larger than")


async def test_an_attachment_outside_discords_cdn_is_never_fetched(world: World) -> None:
    world.bot.get_cog("Generation").attachment_hosts = frozenset({"cdn.discordapp.com"})  # type: ignore[union-attr]
    it = await world.discord.slash(
        world.alice, world.channel, "img2img", image=("cat.png", png()), prompt="x"
    )
    await refused(world, it, "not hosted on Discord")
    assert world.discord.cdn_requests == []


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"steps": 5}, "`steps` = 5"),
        ({"guidance": 30.0}, "`guidance` = 30.0"),
        ({"samples": 9}, "`samples` = 9"),
        ({"strength": 0.0}, "`strength` = 0.0"),
        ({"seed": -7}, "`seed` = -7"),
        ({"size": "1024x1024"}, "`size`"),
        ({"scheduler": "evil"}, "`scheduler`"),
        ({"prompt": "y" * 6000}, "at most 2000 characters"),
        ({"prompt": "\u200b\u200d\x07 "}, "non-empty"),
    ],
)
async def test_raw_out_of_range_options_are_refused_by_the_bot(
    world: World, options: dict[str, object], needle: str
) -> None:
    options = {"prompt": "x", **options}
    it = await world.discord.slash(
        world.alice, world.channel, "img2img", raw=True, image=("cat.png", png()), **options
    )
    await refused(world, it, needle)
    assert world.discord.cdn_requests == []  # refused before downloading anything


async def test_zero_width_and_control_characters_are_stripped(world: World) -> None:
    prompt = "a\u200b cat\x07 with\u202e a hat\n"
    it = await world.discord.slash(
        world.alice, world.channel, "img2img", image=("cat.png", png()), prompt=prompt
    )
    result = await world.result_for(it)
    assert world.segmind.requests[0].body["prompt"] == "a cat with a hat"
    fields = {f["name"]: f["value"] for f in result.embeds[0]["fields"]}
    assert fields["Prompt"] == "a cat with a hat"
