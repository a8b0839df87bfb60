"""Logging set-up with a redaction filter, so secrets never reach a log line.

Redacted: the configured Discord token and API key (exact values), anything shaped like a
Discord bot token or a Segmind key, interaction/webhook tokens inside URLs and in logged
gateway payloads (``"token": …``), and the signature of signed CDN URLs. discord.py logs
request URLs and payloads (with interaction tokens) at DEBUG, so the filter sits on the root
handler and applies to every library.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

REDACTED = "[redacted]"

# (pattern, replacement): the replacement keeps ids and names, drops the secret part.
_RULES = (
    # Discord bot tokens: base64 id . timestamp . hmac
    (re.compile(r"[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{20,}"), REDACTED),
    (re.compile(r"SG_[0-9a-fA-F]{16}"), REDACTED),
    # /interactions/{id}/{token}/callback and /webhooks/{app}/{token}
    (re.compile(r"/(interactions|webhooks)/(\d+)/[^/\s?'\"]+"), rf"/\1/\2/{REDACTED}"),
    # Signed attachment URLs: ?ex=..&is=..&hm=..
    (re.compile(r"([?&])(ex|is|hm)=[0-9a-fA-F]+"), rf"\1\2={REDACTED}"),
    (re.compile(r"(?i)(x-api-key['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"), rf"\1{REDACTED}"),
    # Gateway payloads logged at DEBUG carry each interaction's token as a field.
    (re.compile(r"(['\"]token['\"]\s*:\s*['\"])[^'\"]+"), rf"\1{REDACTED}"),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message with secrets removed."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        record.msg = redact(message, self._secrets)
        record.args = None
        return True


def setup_logging(level: str, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # discord.py logs request bodies and webhook URLs at DEBUG; keep it at INFO unless asked.
    if level != "DEBUG":
        logging.getLogger("discord").setLevel(logging.INFO)
