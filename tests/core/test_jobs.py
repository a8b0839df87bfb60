"""A job's life without Discord: the real SQLite ledger, the Segmind stand-in over loopback,
and a listener that records what a member would be told."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from bot.core.errors import (
    GenerationPaused,
    InsufficientCredits,
    QueueFull,
    SdbotError,
    UpstreamOutOfCredits,
    UpstreamServerError,
)
from bot.core.images import DEFAULT_LIMITS
from bot.core.jobs import JobRequest, JobService, prepare
from bot.core.ledger import AccountState, JobRecord, JobStatus
from bot.core.ledger.sqlite import SqliteLedger
from bot.core.params import img2img_params
from bot.core.pricing import PriceTable, job_cost
from bot.core.results import ResultStore, StoredImage
from bot.core.segmind import SegmindClient
from tests.standins.fake_segmind import Delay, FakeSegmind, Respond

GUILD, ALICE, BOB = 1000, 2001, 2002


@dataclass
class Recorder:
    positions: list[dict[str, int]] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    results: list[tuple[str, list[StoredImage]]] = field(default_factory=list)
    failures: list[tuple[str, SdbotError]] = field(default_factory=list)
    paused: list[AccountState] = field(default_factory=list)
    deliver: bool = True
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_positions(self, positions: dict[str, int]) -> None:
        self.positions.append(positions)

    async def on_started(self, job_key: str) -> None:
        self.started.append(job_key)

    async def on_result(self, job: JobRecord, images: list[StoredImage]) -> bool:
        self.results.append((job.job_key, images))
        self.done.set()
        return self.deliver

    async def on_failed(self, job_key: str, error: SdbotError) -> None:
        self.failures.append((job_key, error))
        self.done.set()

    async def on_paused(self, state: AccountState) -> None:
        self.paused.append(state)


@dataclass
class World:
    service: JobService
    ledger: SqliteLedger
    fake: FakeSegmind
    listener: Recorder
    store: ResultStore


def png(size: tuple[int, int] = (640, 480)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


async def request(key: str, user: int = ALICE, **options: object) -> JobRequest:
    params, image = await prepare(
        png(),
        DEFAULT_LIMITS,
        lambda size: img2img_params(prompt="a red square", input_size=size, **options),  # type: ignore[arg-type]
    )
    return JobRequest(key, GUILD, user, 3000, (), params, image)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    ledger = await SqliteLedger.open(tmp_path / "db.sqlite3")
    for user in (ALICE, BOB):
        await ledger.grant(GUILD, user, 100, actor="test")
    listener = Recorder()
    store = ResultStore(tmp_path / "data")
    async with (
        FakeSegmind(balance=Decimal(50)) as fake,
        SegmindClient(
            fake.base_url,
            fake.api_key,
            max_concurrency=2,
            requests_per_minute=1000,
            timeout_total=5,
            timeout_connect=1,
        ) as client,
    ):
        service = JobService(
            ledger=ledger,
            client=client,
            store=store,
            prices=PriceTable(),
            listener=listener,
            workers=2,
            max_running_per_user=1,
            max_queued_per_user=3,
        )
        service.start()
        yield World(service, ledger, fake, listener, store)
        await service.shutdown(grace=1)
    await ledger.close()


async def until_status(world: World, key: str, status: JobStatus) -> None:
    async def reached() -> None:
        while (job := await world.ledger.job(key)) is None or job.status is not status:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    await asyncio.wait_for(reached(), 10)


async def wait_done(world: World, count: int = 1) -> None:
    async def enough() -> None:
        while len(world.listener.results) + len(world.listener.failures) < count:
            world.listener.done.clear()
            await world.listener.done.wait()

    await asyncio.wait_for(enough(), 10)


async def test_success_charges_once_and_keeps_the_image(world: World) -> None:
    accepted = await world.service.submit(await request("1"))
    assert accepted.cost.credits == 6 and not accepted.duplicate  # 768×512 at 25 steps
    await wait_done(world)
    [(key, images)] = world.listener.results
    assert key == "1"
    with Image.open(io.BytesIO(images[0].data)) as im:
        assert im.size == (768, 512)
    assert world.store.load_result("1") == images
    await until_status(world, "1", JobStatus.DELIVERED)
    balance = await world.ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held, balance.spent) == (94, 0, 6)
    assert world.fake.billed == 1
    assert (await world.ledger.account_state()).remaining == world.fake.balance
    assert await world.ledger.check_invariants() == []


async def test_the_same_key_twice_makes_one_job(world: World) -> None:
    first, second = await asyncio.gather(
        world.service.submit(await request("7")), world.service.submit(await request("7"))
    )
    assert sorted([first.duplicate, second.duplicate]) == [False, True]
    await wait_done(world)
    await asyncio.sleep(0.1)
    assert world.fake.billed == 1
    assert (await world.ledger.balance(GUILD, ALICE)).spent == 6


async def test_a_500_releases_and_is_not_retried(world: World) -> None:
    world.fake.inject(Respond(500, {"error": "boom"}))
    await world.service.submit(await request("2"))
    await wait_done(world)
    [(key, error)] = world.listener.failures
    assert key == "2" and isinstance(error, UpstreamServerError) and error.maybe_billed
    assert len(world.fake.requests) == 1
    balance = await world.ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held, balance.spent) == (100, 0, 0)
    assert await world.ledger.check_invariants() == []


async def test_a_406_pauses_generation_and_tells_admins(world: World) -> None:
    world.fake.inject(Respond(406, {"error": "Not enough credits"}))
    await world.service.submit(await request("3"))
    await wait_done(world)
    assert isinstance(world.listener.failures[0][1], UpstreamOutOfCredits)
    [state] = world.listener.paused
    assert state.paused
    with pytest.raises(GenerationPaused):
        await world.service.submit(await request("4"))
    assert (await world.ledger.balance(GUILD, ALICE)).available == 100


async def test_no_credits_is_refused_before_anything_is_sent(world: World) -> None:
    with pytest.raises(InsufficientCredits):
        await world.service.submit(
            await request("5", user=BOB, samples=4, steps=100, size="768x768")
        )
    assert world.fake.requests == []


async def test_cancel_while_queued_releases(world: World) -> None:
    world.fake.mode = Delay(0.5)
    await world.service.submit(await request("10"))
    await world.service.submit(await request("11"))  # waits: Alice may run one at a time
    assert world.listener.positions[-1] == {"11": 1}  # what the member is shown
    assert await world.service.cancel("11")
    assert not await world.service.cancel("11")
    job = await world.ledger.job("11")
    assert job is not None and job.status is JobStatus.CANCELLED
    await wait_done(world)
    assert (await world.ledger.balance(GUILD, ALICE)).available == 94


async def test_queue_cap_per_member(world: World) -> None:
    world.fake.mode = Delay(0.5)
    for n in range(4):  # one running and three waiting
        await world.service.submit(await request(f"q{n}"))
    with pytest.raises(QueueFull):
        await world.service.submit(await request("q9"))
    assert (await world.ledger.job("q9")) is None


async def test_undelivered_result_is_kept_for_later(world: World) -> None:
    world.listener.deliver = False
    await world.service.submit(await request("20"))
    await wait_done(world)
    await until_status(world, "20", JobStatus.SUCCEEDED)
    assert [j.job_key for j in await world.ledger.undelivered()] == ["20"]
    assert world.store.has_result("20")


async def test_shutdown_releases_waiting_jobs(world: World) -> None:
    world.fake.mode = Delay(0.3)
    await world.service.submit(await request("30"))
    await world.service.submit(await request("31"))
    await asyncio.sleep(0.05)
    await world.service.shutdown(grace=5)
    statuses = {k: (await world.ledger.job(k)).status for k in ("30", "31")}  # type: ignore[union-attr]
    assert statuses == {"30": JobStatus.DELIVERED, "31": JobStatus.FAILED}
    assert await world.ledger.check_invariants() == []


async def test_recovery_captures_a_stored_result_and_releases_the_rest(tmp_path: Path) -> None:
    ledger = await SqliteLedger.open(tmp_path / "db.sqlite3")
    await ledger.grant(GUILD, ALICE, 100, actor="test")
    store = ResultStore(tmp_path / "data")
    req_a, req_b = await request("40"), await request("41")
    for req in (req_a, req_b):
        cost = job_cost(req.params, PriceTable())
        await ledger.hold(GUILD, ALICE, req.job_key, cost, req.params.to_dict())
        await ledger.mark_running(req.job_key)
    # The bot "crashed" after writing job 40's image but before capturing it.
    store.save_result("40", [StoredImage("40-0.jpg", b"\xff\xd8\xff fake")])
    service = JobService(
        ledger=ledger,
        client=None,  # type: ignore[arg-type]
        store=store,
        prices=PriceTable(),
        listener=Recorder(),
        workers=1,
        max_running_per_user=1,
        max_queued_per_user=1,
    )
    report = await service.recover()
    assert report.captured == ["40"] and report.released_unknown == ["41"]
    balance = await ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held, balance.spent) == (94, 0, 6)
    assert await ledger.check_invariants() == []
    await ledger.close()
