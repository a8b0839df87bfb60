"""The cost rule: samples and steps count; the result is whole credits, never zero."""

from __future__ import annotations

from decimal import Decimal

from bot.core.params import img2img_params, outpaint_params
from bot.core.pricing import PriceTable, job_cost

TABLE = PriceTable(img2img_credits=4, outpaint_credits=8, img2img_account=Decimal("0.004"))


def i2i(**kw):  # type: ignore[no-untyped-def]
    return img2img_params(prompt="p", input_size=(512, 512), **kw)


def test_reference_job_costs_the_base_price() -> None:
    cost = job_cost(i2i(steps=25, size="512x512"), TABLE)
    assert cost.credits == 4
    assert cost.account == Decimal("0.004")


def test_samples_multiply() -> None:
    assert job_cost(i2i(steps=25, size="512x512", samples=3), TABLE).credits == 12


def test_steps_scale_and_round_up() -> None:
    assert job_cost(i2i(steps=50, size="512x512"), TABLE).credits == 8
    assert job_cost(i2i(steps=26, size="512x512"), TABLE).credits == 5  # 4.16 → 5


def test_size_counts_for_img2img() -> None:
    # 768×768 is 2.25× the pixels of 512×512.
    assert job_cost(i2i(steps=25, size="768x768"), TABLE).credits == 9


def test_outpaint_price() -> None:
    p = outpaint_params(prompt="p", input_size=(512, 512), steps=50)
    assert job_cost(p, TABLE).credits == 16


def test_never_free() -> None:
    table = PriceTable(img2img_credits=1, reference_steps=100)
    assert job_cost(i2i(steps=20, size="512x512"), table).credits == 1
