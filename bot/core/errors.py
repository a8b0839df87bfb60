"""Every error the core can raise, and the one place where each gets its user-facing message.

The Discord layer and the CLI both show ``error.user_message``; nothing else builds error text
for members. Messages never contain secrets (API key, tokens): they are built only from the
fields below.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal


class SdbotError(Exception):
    """Base of every expected error. ``user_message`` is safe to show to a member."""

    user_message: str = "Something went wrong."

    def __init__(self, user_message: str | None = None) -> None:
        if user_message is not None:
            self.user_message = user_message
        super().__init__(self.user_message)


# --- configuration -------------------------------------------------------------------------


class ConfigError(SdbotError):
    """A missing or invalid setting. Names the setting, never echoes a secret value."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting = setting
        self.problem = problem
        super().__init__(f"{setting}: {problem}")


# --- job parameters ------------------------------------------------------------------------


class InvalidParameter(SdbotError):
    """An option outside what the upstream API (or the bot) accepts."""

    def __init__(self, option: str, value: object, allowed: str) -> None:
        self.option = option
        self.value = value
        self.allowed = allowed
        shown = repr(value) if isinstance(value, str) else str(value)
        super().__init__(f"`{option}` = {shown[:100]} is not allowed: {allowed}.")


# --- input images --------------------------------------------------------------------------


class BadImage(SdbotError):
    """The input image is refused. Subclasses say why; nothing is charged."""

    user_message = "That file could not be used as an image."


class NotAnImage(BadImage):
    user_message = "That file is not a PNG, JPEG, WebP or GIF image."


class EmptyImage(BadImage):
    user_message = "That file is empty."


class ImageTooLarge(BadImage):
    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        super().__init__(f"That image is larger than {limit_bytes / 2**20:.0f} MiB.")


class TooManyPixels(BadImage):
    def __init__(self, width: int, height: int, max_pixels: int, max_side: int) -> None:
        self.width, self.height = width, height
        super().__init__(
            f"That image is {width}×{height}; the limit is {max_pixels / 1e6:.0f} megapixels "
            f"and {max_side} pixels on a side."
        )


class ImageTooSmall(BadImage):
    def __init__(self, width: int, height: int, min_side: int) -> None:
        self.width, self.height = width, height
        super().__init__(
            f"That image is {width}×{height}; each side must be at least {min_side} pixels."
        )


class ExtremeAspectRatio(BadImage):
    def __init__(self, width: int, height: int, max_ratio: float) -> None:
        self.width, self.height = width, height
        super().__init__(
            f"That image is {width}×{height}, too long and thin: the longer side may be at most "
            f"{max_ratio:g} times the shorter one. Crop it and try again."
        )


class DownloadFailed(BadImage):
    user_message = "Could not download that attachment; please try again."


class NoImageAttached(BadImage):
    user_message = "That message has no image attached."


class UntrustedImageSource(BadImage):
    user_message = "That attachment is not hosted on Discord, so the bot will not fetch it."


class TruncatedImage(BadImage):
    user_message = "That image is damaged or cut short; please upload it again."


class AnimatedImage(BadImage):
    user_message = "Animated images are not supported; please upload a still image."


# --- the upstream API ----------------------------------------------------------------------


class UpstreamError(SdbotError):
    """A failed call to the image API.

    ``maybe_billed``: the account may have paid for it (never retry it blindly).
    ``pauses``: generation must pause until an admin acts (misconfiguration or no credits).
    ``retry_safe``: nothing reached the API's billing, so retrying is harmless.
    """

    maybe_billed: bool = False
    pauses: bool = False
    retry_safe: bool = False
    user_message = "The image service failed; your credits were not used."

    def __init__(
        self,
        detail: str = "",
        *,
        status: int | None = None,
        remaining_credits: Decimal | None = None,
    ) -> None:
        self.detail = detail[:300]
        self.status = status
        self.remaining_credits = remaining_credits
        super().__init__()

    def __str__(self) -> str:
        status = f"HTTP {self.status}: " if self.status else ""
        return f"{type(self).__name__}({status}{self.detail})"


class UpstreamMisconfigured(UpstreamError):
    """401 / 404 / 405 / a redirect: the key or the URL is wrong; only an admin can fix it."""

    pauses = True
    user_message = (
        "The bot is misconfigured (the image service refused its key or address). "
        "Generation is paused until an admin fixes it; your credits were not used."
    )


class UpstreamOutOfCredits(UpstreamError):
    """406: the account has no credits left, or a spend cap was hit."""

    pauses = True
    user_message = (
        "The server's image account is out of credits. Generation is paused until an admin "
        "tops it up; your credits were not used."
    )


class UpstreamRejected(UpstreamError):
    """422 or another 4xx: the API refused these settings. Definitive, not billed."""

    user_message = "The image service rejected these settings; your credits were not used."

    def __init__(
        self,
        detail: str = "",
        *,
        status: int | None = None,
        remaining_credits: Decimal | None = None,
    ) -> None:
        super().__init__(detail, status=status, remaining_credits=remaining_credits)
        if self.detail:
            self.user_message = (
                f"The image service rejected these settings ({self.detail[:200]}); "
                "your credits were not used."
            )


class UpstreamRateLimited(UpstreamError):
    """429: nothing was billed; wait until ``reset_at`` (or a short default) and retry."""

    retry_safe = True
    user_message = "The image service is busy right now; please try again in a minute."

    def __init__(
        self,
        detail: str = "",
        *,
        reset_at: datetime | None = None,
        status: int | None = None,
        remaining_credits: Decimal | None = None,
    ) -> None:
        self.reset_at = reset_at
        super().__init__(detail, status=status, remaining_credits=remaining_credits)


class UpstreamUnreachable(UpstreamError):
    """The connection failed before the request was sent: provably not billed."""

    retry_safe = True
    user_message = "The image service could not be reached; your credits were not used."


class UpstreamOutcomeUnknown(UpstreamError):
    """5xx, a timeout or a connection dropped after the request was sent.

    The API may have produced (and billed) an image we never received. Never retried
    automatically: the member is told and offered a Retry button.
    """

    maybe_billed = True
    user_message = (
        "The image service failed before returning a result. Your credits were not used; "
        "press Retry to try again."
    )


class UpstreamServerError(UpstreamOutcomeUnknown):
    """5xx from the API."""


class UpstreamTimeout(UpstreamOutcomeUnknown):
    """No complete answer within the timeout."""

    user_message = (
        "The image service took too long to answer. Your credits were not used; "
        "press Retry to try again."
    )


class UpstreamDisconnected(UpstreamOutcomeUnknown):
    """The connection dropped after the request was sent."""


class UpstreamBadResponse(UpstreamOutcomeUnknown):
    """A 200 whose body is not a usable image (garbage, truncated, wrong size)."""

    user_message = (
        "The image service returned a broken image. Your credits were not used; "
        "press Retry to try again."
    )


# --- credits and the account guard ---------------------------------------------------------


class LedgerError(SdbotError):
    """A credit rule refused the operation. Nothing was charged."""


class InsufficientCredits(LedgerError):
    def __init__(self, needed: int, available: int) -> None:
        self.needed, self.available = needed, available
        super().__init__(
            f"This costs {needed} credits but you have {available}. "
            "Check `/credits` for your next refill."
        )


class UserBlocked(LedgerError):
    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason
        why = f" Reason: {reason}" if reason else ""
        super().__init__(f"You are blocked from generating images on this server.{why}")


class GenerationPaused(LedgerError):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Image generation is paused on this bot: {reason}")


class AccountLow(LedgerError):
    """The account guard: the last seen balance minus the floor cannot cover this job."""

    user_message = (
        "The server's image account is too low on credits for this job. "
        "An admin has to top it up; your credits were not used."
    )


class LedgerBusy(LedgerError):
    """The database stayed locked by another writer for longer than the busy timeout."""

    user_message = "The credit database is busy right now; please try again in a moment."


class UnknownJob(LedgerError):
    user_message = "That job is unknown."


# --- the job queue ----------------------------------------------------------------------------


class QueueFull(SdbotError):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"You already have {limit} job{'s' if limit != 1 else ''} waiting; "
            "wait for one to finish or cancel one."
        )


class QueueClosed(SdbotError):
    user_message = "The bot is restarting; please try again in a minute. Nothing was charged."


class DatabaseNewerThanCode(SdbotError):
    def __init__(self, db_version: int, code_version: int) -> None:
        super().__init__(
            f"The database is at schema version {db_version} but this sdbot only knows up to "
            f"{code_version}. Upgrade sdbot (or restore a matching backup) before starting it."
        )


class MigrationError(SdbotError):
    """A migration file is malformed or failed to apply; the database was left unchanged."""
