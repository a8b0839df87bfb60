"""What a job costs: member credits (the bot's own unit) and the estimated account spend.

The rule, for one job::

    per_image = price_per_image[kind] × (steps / reference_steps)
                                      × (width × height / reference_pixels)   # only if size counts
    credits   = samples × ceil(per_image)            (at least 1)
    account   = samples × account_per_image[kind] × the same two factors

Which factors apply comes from ``upstream_api.PRICE_AFFECTING`` (the API's "Affects Pricing"
marks); the prices themselves are configuration (``SDBOT_PRICE_*``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from bot.core import upstream_api as api
from bot.core.params import JobKind, JobParams


@dataclass(frozen=True)
class PriceTable:
    img2img_credits: int = 4
    outpaint_credits: int = 8
    img2img_account: Decimal = Decimal("0.004")
    outpaint_account: Decimal = Decimal("0.011")
    reference_steps: int = 25
    reference_pixels: int = 512 * 512


@dataclass(frozen=True)
class Cost:
    credits: int  # charged to the member
    account: Decimal  # estimated spend of the operator's account, in its own unit


def _factor(params: JobParams, table: PriceTable) -> Fraction:
    affecting = api.PRICE_AFFECTING[params.kind.value]
    factor = Fraction(1)
    if "num_inference_steps" in affecting:
        factor *= Fraction(params.steps, table.reference_steps)
    if "img_width" in affecting or "img_height" in affecting:
        w, h = params.output_size
        factor *= Fraction(w * h, table.reference_pixels)
    return factor


def job_cost(params: JobParams, table: PriceTable) -> Cost:
    factor = _factor(params, table)
    if params.kind is JobKind.IMG2IMG:
        per_image_credits, per_image_account = table.img2img_credits, table.img2img_account
    else:
        per_image_credits, per_image_account = table.outpaint_credits, table.outpaint_account
    credits = params.samples * max(1, math.ceil(per_image_credits * factor))
    account = per_image_account * params.samples * Decimal(factor.numerator) / factor.denominator
    return Cost(credits=credits, account=account.quantize(Decimal("0.000001")))
