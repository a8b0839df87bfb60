"""download_capped against local servers (127.0.0.1 only): honest, lying, endless, slow, broken."""

from __future__ import annotations

import asyncio
import gzip
import logging
import socket
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from bot.core.download import download_capped, redact
from bot.core.errors import DownloadFailed, ImageTooLarge

CAP = 100_000
SECRET = "hm=5ec12e7deadbeef"
BODY = bytes(range(256)) * 200  # 51,200 bytes, under CAP
FAST = aiohttp.ClientTimeout(total=5, sock_connect=2, sock_read=2)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def honest(request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="image/png")


async def exactly_cap(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * CAP)


async def claims_huge(request: web.Request) -> web.StreamResponse:
    """Headers declare 10 GB, then nothing: a client that trusts the header refuses at once."""
    response = web.StreamResponse()
    response.content_length = 10 * 2**30
    await response.prepare(request)
    await asyncio.sleep(30)
    return response


async def endless_chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    while True:
        await response.write(b"\0" * 16384)


async def stalls(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(b"x")
    await asyncio.sleep(30)
    return response


async def trickles(request: web.Request) -> web.StreamResponse:
    """One byte every 50 ms: never idle long enough for sock_read, only total can stop it."""
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(600):
        await response.write(b"x")
        await asyncio.sleep(0.05)
    return response


async def gzip_bomb(request: web.Request) -> web.Response:
    packed = gzip.compress(bytes(50 * CAP))
    assert len(packed) < CAP
    return web.Response(body=packed, headers={"Content-Encoding": "gzip"})


async def not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, text="404: Not Found")


async def redirects(request: web.Request) -> web.Response:
    raise web.HTTPFound("/honest")


async def server_error(request: web.Request) -> web.Response:
    return web.Response(status=500)


ROUTES: dict[str, Handler] = {
    "/honest": honest,
    "/exactly-cap": exactly_cap,
    "/claims-huge": claims_huge,
    "/endless": endless_chunked,
    "/stalls": stalls,
    "/trickles": trickles,
    "/gzip-bomb": gzip_bomb,
    "/404": not_found,
    "/redirect": redirects,
    "/500": server_error,
}


@dataclass
class Server:
    base: str
    hits: int = 0
    endless_started: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(base="")

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        state.hits += 1
        if request.path == "/endless":
            state.endless_started.set()
        return await handler(request)

    app = web.Application(middlewares=[count])
    for path, handler in ROUTES.items():
        app.router.add_get(path, handler)
    # No access log: it would print the signed query string the tests look for.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    state.base = f"http://{host}:{port}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(trust_env=False) as s:
        yield s


RawReply = Callable[[asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[RawReply], Awaitable[str]]]:
    """A bare TCP server for replies aiohttp's own server refuses to send (lying headers)."""
    servers: list[asyncio.Server] = []

    async def start(reply: RawReply) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            try:
                await reply(writer)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(srv)
        port = srv.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/attachments/1/2/cat.png?ex=1&{SECRET}"

    yield start
    for srv in servers:
        srv.close()
        await srv.wait_closed()


def url(base: str, path: str) -> str:
    return f"{base}{path}?ex=66a0&is=669f&{SECRET}"


# --- the happy paths ----------------------------------------------------------------------


async def test_honest_download(server: Server, session: aiohttp.ClientSession) -> None:
    base = server.base
    assert await download_capped(session, url(base, "/honest"), CAP, client_timeout=FAST) == BODY


async def test_exactly_the_cap_is_allowed(server: Server, session: aiohttp.ClientSession) -> None:
    base = server.base
    data = await download_capped(session, url(base, "/exactly-cap"), CAP, client_timeout=FAST)
    assert len(data) == CAP


# --- refused on size ----------------------------------------------------------------------


async def test_declared_size_refused_before_any_request(
    server: Server, session: aiohttp.ClientSession
) -> None:
    base = server.base
    with pytest.raises(ImageTooLarge):
        await download_capped(session, url(base, "/honest"), CAP, declared_size=CAP + 1)
    assert server.hits == 0


async def test_content_length_over_cap_refused_without_reading(
    server: Server, session: aiohttp.ClientSession
) -> None:
    base = server.base
    started = time.monotonic()
    with pytest.raises(ImageTooLarge):
        await download_capped(session, url(base, "/claims-huge"), CAP, client_timeout=FAST)
    assert time.monotonic() - started < 1  # the 30 s silent body was never waited for


async def test_endless_chunked_body_aborted_at_cap(
    server: Server, session: aiohttp.ClientSession
) -> None:
    base = server.base
    with pytest.raises(ImageTooLarge) as caught:
        await download_capped(session, url(base, "/endless"), CAP, client_timeout=FAST)
    assert server.endless_started.is_set()
    assert caught.value.limit_bytes == CAP


async def test_gzip_bomb_capped_after_decompression(
    server: Server, session: aiohttp.ClientSession
) -> None:
    base = server.base
    with pytest.raises(ImageTooLarge):
        await download_capped(session, url(base, "/gzip-bomb"), CAP, client_timeout=FAST)


async def test_no_content_length_read_until_close_aborted_at_cap(
    raw_server: Callable[[RawReply], Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    async def endless(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n")
        while True:
            writer.write(b"\0" * 16384)
            await writer.drain()

    with pytest.raises(ImageTooLarge):
        await download_capped(session, await raw_server(endless), CAP, client_timeout=FAST)


async def test_content_length_understated_reads_only_what_was_declared(
    raw_server: Callable[[RawReply], Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    async def lies(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" + b"y" * (20 * CAP))
        await writer.drain()

    # aiohttp either stops at the declared length or rejects the extra bytes as a bad message
    # (which one depends on how the bytes arrive): never more than was declared.
    try:
        data = await download_capped(session, await raw_server(lies), CAP, client_timeout=FAST)
    except DownloadFailed:
        return
    assert data == b"y" * 10


async def test_content_length_overstated_then_closed_fails(
    raw_server: Callable[[RawReply], Awaitable[str]], session: aiohttp.ClientSession
) -> None:
    async def lies(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 50000\r\n\r\n" + b"y" * 10)
        await writer.drain()

    with pytest.raises(DownloadFailed):
        await download_capped(session, await raw_server(lies), CAP, client_timeout=FAST)


# --- refused for other reasons ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/404", "/500", "/redirect"])
async def test_http_errors_and_redirects_fail(
    path: str, server: Server, session: aiohttp.ClientSession
) -> None:
    base = server.base
    with pytest.raises(DownloadFailed) as caught:
        await download_capped(session, url(base, path), CAP, client_timeout=FAST)
    assert caught.value.user_message == "Could not download that attachment; please try again."
    assert server.hits == 1  # a redirect is not followed


async def test_stalled_server_hits_sock_read_timeout(
    server: Server, session: aiohttp.ClientSession
) -> None:
    base = server.base
    started = time.monotonic()
    with pytest.raises(DownloadFailed):
        await download_capped(
            session,
            url(base, "/stalls"),
            CAP,
            client_timeout=aiohttp.ClientTimeout(total=10, sock_read=0.3),
        )
    assert time.monotonic() - started < 3


async def test_trickling_server_hits_total_timeout(
    server: Server, session: aiohttp.ClientSession
) -> None:
    base = server.base
    started = time.monotonic()
    with pytest.raises(DownloadFailed):
        await download_capped(
            session,
            url(base, "/trickles"),
            CAP,
            client_timeout=aiohttp.ClientTimeout(total=0.6, sock_read=2),
        )
    assert time.monotonic() - started < 3


async def test_connection_refused_fails(session: aiohttp.ClientSession) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadFailed):
        await download_capped(
            session, f"http://127.0.0.1:{port}/x?{SECRET}", CAP, client_timeout=FAST
        )


# --- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/404", "/stalls", "/endless", "/claims-huge"])
async def test_signed_query_never_logged_nor_chained(
    path: str,
    server: Server,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    base = server.base
    caplog.set_level(logging.DEBUG)
    timeout = aiohttp.ClientTimeout(total=2, sock_read=0.3)
    with pytest.raises((DownloadFailed, ImageTooLarge)) as caught:
        await download_capped(session, url(base, path), CAP, client_timeout=timeout)
    assert caplog.records  # something was logged, ...
    assert SECRET not in caplog.text  # ... but never the signature
    assert path in caplog.text
    assert SECRET not in "".join(traceback.format_exception(caught.value))


def test_redact() -> None:
    assert (
        redact("https://user:pw@cdn.discordapp.com/attachments/1/2/a.png?ex=1&hm=2#frag")
        == "https://cdn.discordapp.com/attachments/1/2/a.png"
    )
    assert SECRET not in redact(f"http://[::1:/x?{SECRET}")
