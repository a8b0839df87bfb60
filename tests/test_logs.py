"""The redaction filter: no secret survives into a log line, whatever the library logs."""

from __future__ import annotations

import logging

from bot.logs import REDACTED, RedactingFilter, redact

BOT_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4OTA.GhIjKl.abcdefghijklmnopqrstuvwxyz0123"
KEY = "SG_0123456789abcdef"


def test_known_shapes_are_redacted() -> None:
    cases = {
        f"Authorization: Bot {BOT_TOKEN}": BOT_TOKEN,
        f"x-api-key: {KEY}": KEY,
        "POST /api/v10/interactions/123/aW50.tok-en_x/callback": "aW50.tok-en_x",
        "PATCH /webhooks/555/tok-abc.def/messages/@original": "tok-abc.def",
        "GET https://cdn.discordapp.com/a.png?ex=65abc&is=65def&hm=0af3": "0af3",
        "{'d': {'token': 'secret-interaction-token', 'id': '1'}}": "secret-interaction-token",
    }
    for line, secret in cases.items():
        cleaned = redact(line)
        assert secret not in cleaned and REDACTED in cleaned, line
    assert redact("/interactions/123/x/callback").startswith("/interactions/123/")


def test_configured_secrets_are_redacted_exactly() -> None:
    assert redact("the key is plain-secret", ["plain-secret"]) == f"the key is {REDACTED}"


def test_filter_rewrites_message_args_and_tracebacks(caplog) -> None:  # type: ignore[no-untyped-def]
    logger = logging.getLogger("test.redaction")
    caplog.handler.addFilter(RedactingFilter([KEY]))
    try:
        raise RuntimeError(f"failed with {KEY}")
    except RuntimeError:
        logger.exception("request to %s failed", f"/webhooks/1/{BOT_TOKEN}")
    text = caplog.text
    assert KEY not in text and BOT_TOKEN not in text and "RuntimeError" in text
