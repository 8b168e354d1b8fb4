"""Interleaved measurement: every side of a comparison runs in turn, round after round.

A *comparison* has several *sides* (the raw driver, the wrapper, ...). Each round runs every side
once for the same time slice (or the same fixed amount of work); the order rotates and alternates
direction from round to round, so no side always runs first or right after another. A side's ratio
to its reference is computed per round, from two slices that ran seconds apart, and the median of
those per-round ratios is reported: slow drift of the machine (other processes, thermal, the
server's own background work) affects both figures of a round alike and cancels out.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import pstats
import random
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Comparison",
    "Measurement",
    "RatioResult",
    "Side",
    "SideResult",
    "Target",
    "Versus",
    "Worker",
    "as_latency",
    "async_rate",
    "at_least",
    "at_most",
    "below",
    "interleave",
    "loop_measure",
    "optional",
    "profile",
    "sync_rate",
    "thread_measure",
]


@dataclass(frozen=True)
class Target:
    """A goal from the issue: ``ratio >= value``, ``ratio <= value`` or ``figure < value``."""

    op: str
    value: float
    unit: str = "x"

    def met(self, figure: float) -> bool:
        if self.op == ">=":
            return figure >= self.value
        if self.op == "<=":
            return figure <= self.value
        return figure < self.value

    def __str__(self) -> str:
        symbol = {">=": "≥", "<=": "≤", "<": "<"}[self.op]
        sep = "" if self.unit == "x" else " "
        value = f"{self.value:.2f}" if self.unit == "x" else f"{self.value:g}"
        return f"{symbol} {value}{sep}{self.unit}"


def at_least(value: float) -> Target:
    """The side must reach ``value`` x its reference (throughput)."""
    return Target(">=", value)


def at_most(value: float) -> Target:
    """The side may take at most ``value`` x its reference (latency)."""
    return Target("<=", value)


def below(value: float, unit: str) -> Target:
    """An absolute limit on the figure itself (memory growth)."""
    return Target("<", value, unit)


@dataclass(frozen=True)
class Versus:
    """Compare a side to another side of the same comparison, optionally against a target."""

    ref: str
    target: Target | None = None


@dataclass(frozen=True)
class Measurement:
    """One slice's outcome: the figure, and the client CPU it cost per operation.

    ``cpu_us`` is this process's CPU time (all threads; for pgbench, the child process's) divided
    by the operations done. Unlike throughput it hardly moves when other processes compete for
    the CPU, so it shows a wrapper's own overhead even on a noisy machine.
    """

    value: float
    cpu_us: float | None = None


@dataclass
class Side:
    """One contender.

    Attributes:
        name: Shown in the table; also what other sides name as their reference.
        measure: Runs one slice of ``seconds`` (or a fixed amount of work) and returns the figure
            in the comparison's unit (and, where known, the client CPU per operation).
        versus: The references this side is compared to (one table row each).
        limit: An absolute target on the figure itself (memory).
        warmup: Run once before the first round (fills caches, prepares statements); defaults
            to one short ``measure`` whose figure is discarded.
    """

    name: str
    measure: Callable[[float], Measurement]
    versus: tuple[Versus, ...] = ()
    limit: Target | None = None
    warmup: Callable[[], object] | None = None


@dataclass
class Comparison:
    """A block of the results table: sides measured against each other, interleaved."""

    id: str
    title: str
    unit: str
    sides: list[Side]
    slice_seconds: float
    rounds: int
    unavailable: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class RatioResult:
    """A side's figure divided by its reference's, per round and as a median."""

    ref: str
    per_round: list[float]
    median: float | None
    target: str | None
    passed: bool | None
    cpu_ratio: float | None = None


@dataclass
class SideResult:
    """Everything measured for one side of one comparison."""

    comparison: str
    title: str
    unit: str
    side: str
    per_round: list[float]
    median: float | None
    ratios: list[RatioResult]
    cpu_us_per_round: list[float] = field(default_factory=list)
    cpu_us: float | None = None
    limit: str | None = None
    passed: bool | None = None
    error: str | None = None
    skipped: str | None = None


@dataclass
class Worker:
    """What a worker passes to each operation: its own random stream and its index."""

    index: int
    rng: random.Random


SyncOp = Callable[[Worker], object]
AsyncOp = Callable[[Worker], Awaitable[object]]


def _result(count: int, elapsed: float, cpu: float) -> Measurement:
    return Measurement(count / elapsed, cpu * 1e6 / count)


def sync_rate(op: SyncOp, workers: int, seconds: float, *, seed: int = 1) -> Measurement:
    """Run ``op`` in ``workers`` threads for ``seconds``; return operations per second.

    Every side gets the same seeds, so every side draws the same sequence of keys.
    """
    cpu_start = time.process_time()
    if workers == 1:
        worker = Worker(0, random.Random(seed))
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            op(worker)
            count += 1
            now = time.perf_counter()
            if now >= deadline:
                return _result(count, now - start, time.process_time() - cpu_start)

    counts = [0] * workers
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * workers
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers)

    def run(index: int) -> None:
        worker = Worker(index, random.Random(seed + index))
        count = 0
        try:
            barrier.wait()
            start = time.perf_counter()
            deadline = start + seconds
            while True:
                op(worker)
                count += 1
                now = time.perf_counter()
                if now >= deadline:
                    break
        except BaseException as exc:  # reported to the caller, which stops the side
            errors.append(exc)
            barrier.abort()
            return
        counts[index] = count
        spans[index] = (start, now)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
        raise (real or errors)[0]
    elapsed = max(end for _, end in spans) - min(start for start, _ in spans)
    return _result(sum(counts), elapsed, time.process_time() - cpu_start)


async def async_rate(op: AsyncOp, workers: int, seconds: float, *, seed: int = 1) -> Measurement:
    """Run ``op`` in ``workers`` asyncio tasks for ``seconds``; return operations per second."""
    cpu_start = time.process_time()

    async def run(index: int) -> tuple[int, float, float]:
        worker = Worker(index, random.Random(seed + index))
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            await op(worker)
            count += 1
            now = time.perf_counter()
            if now >= deadline:
                return count, start, now

    if workers == 1:
        count, start, end = await run(0)
        return _result(count, end - start, time.process_time() - cpu_start)
    results = await asyncio.gather(*(run(i) for i in range(workers)))
    elapsed = max(r[2] for r in results) - min(r[1] for r in results)
    return _result(sum(r[0] for r in results), elapsed, time.process_time() - cpu_start)


def _round_order(sides: list[Side], round_no: int) -> list[Side]:
    if not sides:  # every side unavailable or skipped: only notes to report
        return []
    shift = round_no % len(sides)
    order = sides[shift:] + sides[:shift]
    if round_no % 2:
        order.reverse()
    return order


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def interleave(
    comparison: Comparison,
    *,
    warmup_seconds: float,
    on_progress: Callable[[str], None] | None = None,
) -> list[SideResult]:
    """Measure every side of ``comparison``, interleaved, and compute the ratios."""
    sides = comparison.sides
    figures: dict[str, dict[int, float]] = {s.name: {} for s in sides}
    cpu: dict[str, dict[int, float]] = {s.name: {} for s in sides}
    errors: dict[str, str] = dict(comparison.unavailable)

    for side in sides:
        try:
            if side.warmup is not None:
                side.warmup()
            else:
                side.measure(warmup_seconds)
        except Exception as exc:
            errors[side.name] = _describe(exc)

    for round_no in range(comparison.rounds):
        if on_progress is not None:
            on_progress(f"{comparison.id}: round {round_no + 1}/{comparison.rounds}")
        for side in _round_order(sides, round_no):
            if side.name in errors:
                continue
            # A collection triggered by the previous side's garbage must not land in this slice.
            gc.collect()
            try:
                sample = side.measure(comparison.slice_seconds)
            except Exception as exc:
                errors[side.name] = _describe(exc)
                continue
            figures[side.name][round_no] = sample.value
            if sample.cpu_us is not None:
                cpu[side.name][round_no] = sample.cpu_us

    results: list[SideResult] = []
    for side in sides:
        own = figures[side.name]
        values = [own[r] for r in sorted(own)]
        ratios: list[RatioResult] = []
        for versus in side.versus:
            ref = figures.get(versus.ref, {})
            per_round = [own[r] / ref[r] for r in sorted(own) if r in ref and ref[r] > 0]
            median = statistics.median(per_round) if per_round else None
            own_cpu, ref_cpu = cpu[side.name], cpu.get(versus.ref, {})
            cpu_ratios = [own_cpu[r] / ref_cpu[r] for r in own_cpu if ref_cpu.get(r)]
            target = versus.target
            ratios.append(
                RatioResult(
                    ref=versus.ref,
                    per_round=per_round,
                    median=median,
                    target=str(target) if target else None,
                    passed=target.met(median) if target and median is not None else None,
                    cpu_ratio=statistics.median(cpu_ratios) if cpu_ratios else None,
                )
            )
        median_figure = statistics.median(values) if values else None
        cpu_values = [cpu[side.name][r] for r in sorted(cpu[side.name])]
        limit = side.limit
        results.append(
            SideResult(
                comparison=comparison.id,
                title=comparison.title,
                unit=comparison.unit,
                side=side.name,
                per_round=values,
                median=median_figure,
                ratios=ratios,
                cpu_us_per_round=cpu_values,
                cpu_us=statistics.median(cpu_values) if cpu_values else None,
                limit=str(limit) if limit else None,
                passed=limit.met(median_figure) if limit and median_figure is not None else None,
                error=errors.get(side.name),
            )
        )
    for name, reason in comparison.unavailable.items():
        if name not in figures:
            results.append(
                SideResult(
                    comparison=comparison.id,
                    title=comparison.title,
                    unit=comparison.unit,
                    side=name,
                    per_round=[],
                    median=None,
                    ratios=[],
                    error=reason,
                )
            )
    for name, reason in comparison.skipped.items():
        results.append(
            SideResult(
                comparison=comparison.id,
                title=comparison.title,
                unit=comparison.unit,
                side=name,
                per_round=[],
                median=None,
                ratios=[],
                skipped=reason,
            )
        )
    return results


def profile(side: Side, seconds: float, *, limit: int = 25) -> str:
    """Run one slice of ``side`` under cProfile; the top functions by own time, as text."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        side.measure(seconds)
    finally:
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    return out.getvalue()


def as_latency(sample: Measurement) -> Measurement:
    """Operations per second (one worker) to microseconds per operation."""
    return Measurement(1e6 / sample.value, sample.cpu_us)


def loop_measure(
    loop: asyncio.AbstractEventLoop, op: AsyncOp, workers: int
) -> Callable[[float], Measurement]:
    """A ``Side.measure`` running ``op`` in ``workers`` tasks on ``loop``."""

    def measure(seconds: float) -> Measurement:
        return loop.run_until_complete(async_rate(op, workers, seconds))

    return measure


def thread_measure(op: SyncOp, workers: int) -> Callable[[float], Measurement]:
    """A ``Side.measure`` running ``op`` in ``workers`` threads."""

    def measure(seconds: float) -> Measurement:
        return sync_rate(op, workers, seconds)

    return measure


def optional(name: str, missing: dict[str, str], factory: Callable[[], Any]) -> Any:
    """Build a wrapper side's object; a backend that is not installed becomes a table note."""
    try:
        return factory()
    except ImportError as exc:
        missing[name] = f"not installed: {exc}"
    except Exception as exc:
        missing[name] = _describe(exc)
    return None
