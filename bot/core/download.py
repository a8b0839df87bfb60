"""Fetching an attachment's bytes with a hard byte cap, enforced while reading.

``Content-Length`` may be missing (chunked) or false, and discord.py's ``Attachment.read()``
reads without any cap, so the body is streamed and the download aborted as soon as it passes
the cap. Attachment URLs are signed (``ex``/``is``/``hm`` query parameters grant access to the
member's file): only the scheme, host and path are ever logged, and no aiohttp exception (whose
text can carry the full URL) is chained onto what we raise.

Use a session without credentials (no API key, no Discord token) and ``trust_env=False``.
"""

from __future__ import annotations

import logging
from typing import Final

import aiohttp
from yarl import URL

from bot.core.errors import DownloadFailed, ImageTooLarge

log = logging.getLogger(__name__)


# sock_read catches a stalled server, total a slow-loris trickle that keeps sock_read happy.
DOWNLOAD_TIMEOUT: Final = aiohttp.ClientTimeout(total=60, sock_connect=10, sock_read=15)
CHUNK_SIZE: Final = 64 * 1024


def redact(url: str) -> str:
    """The URL without query, fragment or credentials: safe to log."""
    try:
        parsed = URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<unparsable URL>"


async def download_capped(
    session: aiohttp.ClientSession,
    url: str,
    max_bytes: int,
    *,
    declared_size: int | None = None,
    client_timeout: aiohttp.ClientTimeout = DOWNLOAD_TIMEOUT,
) -> bytes:
    """The body at ``url``, refused with ImageTooLarge as soon as it is known to pass ``max_bytes``.

    ``declared_size`` (Discord's ``Attachment.size``) refuses before any request is made.
    Anything else that goes wrong (status other than 200, redirect, timeout, dropped connection)
    raises DownloadFailed.
    """
    if declared_size is not None and declared_size > max_bytes:
        raise ImageTooLarge(max_bytes)
    try:
        async with session.get(url, allow_redirects=False, timeout=client_timeout) as response:
            if response.status != 200:
                log.warning("download refused: HTTP %d from %s", response.status, redact(url))
                raise DownloadFailed()
            return await _read_capped(response, max_bytes, url)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("download failed: %s from %s", type(exc).__name__, redact(url))
        raise DownloadFailed() from None


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int, url: str) -> bytes:
    if response.content_length is not None and response.content_length > max_bytes:
        log.info(
            "download refused: Content-Length %d from %s", response.content_length, redact(url)
        )
        raise ImageTooLarge(max_bytes)
    body = bytearray()
    # Counts bytes after aiohttp's decompression, so a gzip bomb is capped too.
    async for chunk in response.content.iter_chunked(CHUNK_SIZE):
        body += chunk
        if len(body) > max_bytes:
            log.info("download aborted past %d bytes from %s", max_bytes, redact(url))
            raise ImageTooLarge(max_bytes)
    return bytes(body)
