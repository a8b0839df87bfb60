"""The life of a job, with no Discord in it: hold → queue → call the API → store → capture →
deliver, or release on any failure.

Order matters for "never lose credits or images":

* credits are held before the job is queued, so the queue never holds unpaid work;
* the API's images are written to disk (fsynced) BEFORE the hold is captured, so a crash in
  between is recovered as "result exists → capture" (see ``Ledger.recover``);
* a job is marked delivered only after the Discord layer says the post succeeded; anything
  undelivered is listed at start-up and posted again.

The Discord layer (or the CLI) plugs in through :class:`JobListener`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from bot.core.errors import (
    QueueClosed,
    QueueFull,
    SdbotError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamOutOfCredits,
)
from bot.core.images import (
    Fit,
    ImageLimits,
    encode_request_image,
    prepare_input,
    run_in_image_thread,
)
from bot.core.ledger.store import AccountState, JobRecord, Ledger, PauseKind, RecoveryReport
from bot.core.params import Img2ImgParams, JobParams, Size
from bot.core.pricing import Cost, PriceTable, job_cost
from bot.core.queue import FairQueue
from bot.core.results import ResultStore, StoredImage
from bot.core.segmind import Generation, SegmindClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobRequest:
    job_key: str  # the Discord interaction id: the idempotency key
    guild_id: int
    user_id: int
    channel_id: int | None
    role_ids: tuple[int, ...]
    params: JobParams
    image: bytes  # the prepared request image, already at params.input_size


@dataclass(frozen=True)
class Accepted:
    job: JobRecord
    cost: Cost
    duplicate: bool  # the key was seen before: nothing new was held or queued


async def prepare(
    data: bytes, limits: ImageLimits, make_params: Callable[[Size], JobParams]
) -> tuple[JobParams, bytes]:
    """Untrusted image bytes → validated params and the request image, off the event loop.

    ``make_params`` gets the decoded (EXIF-rotated) size, which picks default sizes/presets.
    """
    return await run_in_image_thread(_prepare_now, data, limits, make_params)


def _prepare_now(
    data: bytes, limits: ImageLimits, make_params: Callable[[Size], JobParams]
) -> tuple[JobParams, bytes]:
    # One trip to the image pool: a decoded image never waits in memory for a second trip
    # behind every other member's decode (50 photos at once: ~9 MB each, all alive at once).
    decoded = prepare_input(data, limits)
    params = make_params(decoded.size)
    # img2img's output size is fixed, so crop to it; outpaint presets already kept the aspect.
    fit: Fit = "cover" if isinstance(params, Img2ImgParams) else "exact"
    return params, encode_request_image(decoded.image, params.input_size, fit)


class JobListener(Protocol):
    """What the front end is told. Every method must return quickly and never raise."""

    async def on_positions(self, positions: dict[str, int]) -> None: ...

    async def on_started(self, job_key: str) -> None: ...

    async def on_result(self, job: JobRecord, images: list[StoredImage]) -> bool:
        """Post the result; True when it was delivered (then the job is marked delivered)."""
        ...

    async def on_failed(self, job_key: str, error: SdbotError) -> None: ...

    async def on_paused(self, state: AccountState) -> None: ...


class JobService:
    def __init__(
        self,
        *,
        ledger: Ledger,
        client: SegmindClient,
        store: ResultStore,
        prices: PriceTable,
        listener: JobListener,
        workers: int,
        max_running_per_user: int,
        max_queued_per_user: int,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self._client = client
        self._prices = prices
        self._listener = listener
        self._queue: FairQueue[JobRequest] = FairQueue(
            max_running_per_user=max_running_per_user, max_queued_per_user=max_queued_per_user
        )
        self._max_queued = max_queued_per_user
        self._worker_count = workers
        self._workers: list[asyncio.Task[None]] = []
        self._running: dict[str, asyncio.Task[None]] = {}
        self.accepting = True

    # --- lifecycle -------------------------------------------------------------------------

    async def recover(self) -> RecoveryReport:
        """Resolve jobs a crash left open. Run before accepting any command."""

        def find_result(job: JobRecord) -> str | None:
            return (
                str(self.store.result_dir(job.job_key))
                if self.store.has_result(job.job_key)
                else None
            )

        report = await self.ledger.recover(find_result)
        log.info(
            "recovery: %d queued released, %d running released (no result), %d captured, "
            "%d results to deliver",
            len(report.released),
            len(report.released_unknown),
            len(report.captured),
            len(report.undelivered),
        )
        return report

    def start(self) -> None:
        for n in range(self._worker_count):
            self._workers.append(asyncio.create_task(self._work(), name=f"job-worker-{n}"))

    async def shutdown(self, grace: float) -> None:
        """Stop taking jobs, release the waiting ones, give running ones ``grace`` seconds.

        A job still running after that is cancelled and left ``running`` in the ledger: its
        request may have reached the API, so only start-up recovery may decide its fate.
        """
        self.accepting = False
        for request in self._queue.drain():
            await self._release(request.job_key, "the bot restarted before the job started")
            await self._listener.on_failed(request.job_key, QueueClosed())
        running = list(self._running.values())
        if running:
            await asyncio.wait(running, timeout=grace)
        for task in [*self._workers, *self._running.values()]:
            task.cancel()
        for task in [*self._workers, *self._running.values()]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()

    # --- admission ------------------------------------------------------------------------

    def cost(self, params: JobParams) -> Cost:
        return job_cost(params, self._prices)

    async def submit(self, request: JobRequest) -> Accepted:
        """Hold the cost and queue the job. Raises the reason when it is refused."""
        if not self.accepting:
            raise QueueClosed()
        if self._queue.waiting_for(request.user_id) >= self._max_queued:
            raise QueueFull(self._max_queued)
        cost = self.cost(request.params)
        await asyncio.to_thread(self.store.save_input, request.job_key, request.image)
        held = await self.ledger.hold(
            request.guild_id,
            request.user_id,
            request.job_key,
            cost,
            request.params.to_dict(),
            role_ids=request.role_ids,
            channel_id=request.channel_id,
        )
        if not held.created:
            return Accepted(held.job, cost, duplicate=True)
        try:
            await self._queue.push(request.user_id, request.job_key, request)
        except SdbotError:
            await self._release(request.job_key, "refused by the queue")
            raise
        await self._positions_changed()
        return Accepted(held.job, cost, duplicate=False)

    async def cancel(self, job_key: str) -> bool:
        """Cancel a job that has not started; its hold is released."""
        if await self._queue.cancel(job_key) is None:
            return False
        await self._release(job_key, "cancelled by the member", cancelled=True)
        await self._positions_changed()
        return True

    def is_running(self, job_key: str) -> bool:
        return job_key in self._running

    # --- the work -------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            try:
                member, job_key, request = await self._queue.next()
            except QueueClosed:
                return
            called = asyncio.Event()  # set once the API call is over, whatever its outcome
            task = asyncio.create_task(self._run(request, called), name=f"job-{job_key}")
            self._running[request.job_key] = task
            task.add_done_callback(functools.partial(self._job_done, request.job_key))
            await self._positions_changed()
            # Wait for the API call only: storing, capturing and posting the result go on in
            # the job's own task while this worker starts the next job, so the API's slots
            # are never idle behind Discord uploads and fsyncs. Not awaiting the task itself
            # also means a worker cancelled at shutdown never cancels the job with it.
            waiter = asyncio.ensure_future(called.wait())
            try:
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            await self._queue.finished(member)

    def _job_done(self, job_key: str, task: asyncio.Task[None]) -> None:
        self._running.pop(job_key, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("job %s crashed", job_key, exc_info=task.exception())

    async def _run(self, request: JobRequest, called: asyncio.Event) -> None:
        key = request.job_key
        try:
            await self.ledger.mark_running(key, balance_before=self._client.last_remaining_credits)
            await self._listener.on_started(key)
            generation = await self._client.generate(request.params, request.image)
        except UpstreamError as error:
            called.set()  # before the bookkeeping: the worker may take the next job
            await self._upstream_failed(key, error)
            return
        finally:
            called.set()
        await self._succeeded(request, generation)

    async def _succeeded(self, request: JobRequest, generation: Generation) -> None:
        key = request.job_key
        images = [
            StoredImage(f"{key}-{i}.{r.extension}", r.data) for i, r in enumerate(generation.images)
        ]
        path = await asyncio.to_thread(self.store.save_result, key, images)
        if generation.remaining_credits is not None:
            await self._record_balance(generation.remaining_credits)
        await self.ledger.capture(
            key,
            str(path),
            seed=request.params.seed,
            balance_after=generation.remaining_credits,
        )
        job = await self.ledger.job(key)
        if job is not None and await self._listener.on_result(job, images):
            await self.ledger.mark_delivered(key)

    async def _upstream_failed(self, key: str, error: UpstreamError) -> None:
        log.warning("job %s failed upstream: %s", key, error)
        if error.remaining_credits is not None:
            await self._record_balance(error.remaining_credits, successful=False)
        if isinstance(error, UpstreamBadResponse):
            log.error("job %s: the API answered 200 with an unusable image (%s)", key, error.detail)
        await self._release(key, str(error), balance_after=error.remaining_credits)
        if error.pauses:
            out_of_credits = isinstance(error, UpstreamOutOfCredits)
            kind = PauseKind.OUT_OF_CREDITS if out_of_credits else PauseKind.MISCONFIGURED
            state = await self.ledger.pause(_pause_reason(error), kind=kind, actor="bot")
            await self._listener.on_paused(state)
        await self._listener.on_failed(key, error)

    async def _record_balance(self, remaining: Decimal, *, successful: bool = True) -> None:
        # Only a successful call may lift an out-of-credits pause: a 406 for a spend cap can
        # still report a high balance.
        await self.ledger.record_account_balance(remaining, successful=successful)

    async def _release(
        self,
        key: str,
        reason: str,
        *,
        cancelled: bool = False,
        balance_after: Decimal | None = None,
    ) -> None:
        await self.ledger.release(key, reason, cancelled=cancelled, balance_after=balance_after)

    async def _positions_changed(self) -> None:
        positions = {str(k): v for k, v in self._queue.positions().items()}
        await self._listener.on_positions(positions)


def _pause_reason(error: UpstreamError) -> str:
    if isinstance(error, UpstreamOutOfCredits):
        return "the image account is out of credits (HTTP 406)"
    status = f"HTTP {error.status}" if error.status else "a redirect"
    return f"the image service refused the bot's key or address ({status})"
