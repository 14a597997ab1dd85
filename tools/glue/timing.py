"""Throughput with the compile time kept apart, for ``evaluate_glue``, ``finetune`` and bench.

A call (an evaluation batch, a training step) is a warm-up call when it compiled something
(``torch._dynamo`` made a new graph: the model under ``torch.compile``, or the eager
elementwise fusion's kernels) or when it is one of the first calls of its input shape in
compiled mode (the first compiles; under CUDA graphs the second records the graph). Warm-up
calls make the compile time; the others the throughput.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainerCallback


def compile_count() -> int:
    """Graphs ``torch._dynamo`` has made in this process so far (it counts every compile)."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def synchronize(device: torch.device | str | None) -> None:
    """Waits for the GPU's queued work, so that the wall clock covers it (no-op on the CPU)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Throughput:
    """Samples and seconds of steady calls, and seconds of warm-up calls.

    Attributes:
        warmup_calls: leading calls of each input shape counted as warm-up even without a new
            graph (0 in eager mode, 1 compiled, 2 under CUDA graphs).
    """

    warmup_calls: int = 0
    compile_seconds: float = 0.0
    seconds: float = 0.0
    samples: int = 0
    warmup_samples: int = 0
    _seen: Counter = field(default_factory=Counter, repr=False)

    def add(self, seconds: float, samples: int, shape: Hashable = None, compiled_now: bool = False) -> None:
        """Counts one call of `samples` samples that took `seconds`, with inputs of `shape`;
        `compiled_now`: a graph was made during it."""
        warmup = self.next_call(shape)
        self.add_seconds(seconds, samples, warmup or compiled_now)

    def next_call(self, shape: Hashable = None) -> bool:
        """Counts a call with inputs of `shape`; returns whether it is a warm-up call by its
        place among that shape's calls."""
        self._seen[shape] += 1
        return self._seen[shape] <= self.warmup_calls

    def add_seconds(self, seconds: float, samples: int, warmup: bool) -> None:
        """Adds `seconds` of calls counted with ``next_call`` holding `samples` samples, to the
        warm-up time or to the steady time."""
        if warmup:
            self.compile_seconds += seconds
            self.warmup_samples += samples
        else:
            self.seconds += seconds
            self.samples += samples

    @property
    def samples_per_second(self) -> float | None:
        """Samples per second of the steady calls; of all calls when every call was a warm-up
        call (a run too short to tell them apart); None before any call."""
        if self.samples and self.seconds > 0:
            return self.samples / self.seconds
        total = self.seconds + self.compile_seconds
        return (self.samples + self.warmup_samples) / total if total > 0 else None

    def summary(self) -> dict[str, float | None]:
        """``{"compile_seconds", "samples_per_second"}``, rounded for reports."""
        rate = self.samples_per_second
        return {"compile_seconds": round(self.compile_seconds, 3),
                "samples_per_second": None if rate is None else round(rate, 2)}


class CallTimer:
    """Times one call into a :class:`Throughput`: ``started = timer.start()``, the call, then
    ``timer.stop(started, samples, shape)``."""

    def __init__(self, throughput: Throughput, device: torch.device | str | None):
        self.throughput = throughput
        self.device = device

    def start(self) -> tuple[float, int]:
        synchronize(self.device)
        return time.perf_counter(), compile_count()

    def stop(self, started: tuple[float, int], samples: int, shape: Hashable = None) -> None:
        synchronize(self.device)
        t0, graphs = started
        self.throughput.add(time.perf_counter() - t0, samples, shape, compile_count() != graphs)


class StreamTimer:
    """Times a stream of calls (``timer.call(fn, samples, shape)``, then ``timer.close()``) into a
    :class:`Throughput`, without waiting for the GPU between steady calls, so that the host
    prepares and launches the next call while the GPU runs the last one, as in a run that is not
    timed.

    A warm-up call (by its place among its shape's calls) is timed alone, the GPU's queue empty
    before and after it. Steady calls are timed in spans: a span starts at the first steady call
    after the GPU's queue was emptied and ends, emptying it, before the next warm-up call and at
    ``close()``. A steady call that made a graph (``compile_count``) turns its span so far into
    warm-up time. On a CPU, where calls do not overlap, each call is its own span."""

    def __init__(self, throughput: Throughput, device: torch.device | str | None):
        self.throughput = throughput
        self.device = device
        self._overlaps = device is not None and torch.device(device).type == "cuda"
        self._span: tuple[float, int] | None = None  # (start, samples so far)

    def call(self, fn: Callable[[], Any], samples: int, shape: Hashable = None) -> Any:
        """Runs `fn` as one call of `samples` samples with inputs of `shape`; returns its result."""
        if self.throughput.next_call(shape):
            self.close()
            synchronize(self.device)
            started = time.perf_counter()
            result = fn()
            synchronize(self.device)
            self.throughput.add_seconds(time.perf_counter() - started, samples, warmup=True)
            return result
        if self._span is None:
            self._span = (time.perf_counter(), 0)
        graphs = compile_count()
        result = fn()
        self._span = (self._span[0], self._span[1] + samples)
        if compile_count() != graphs:
            self.close(warmup=True)
        elif not self._overlaps:
            self.close()
        return result

    def close(self, warmup: bool = False) -> None:
        """Ends the open span, if any: waits for the GPU and adds the span's seconds and samples
        (to the warm-up time when `warmup`)."""
        if self._span is None:
            return
        synchronize(self.device)
        started, samples = self._span
        self._span = None
        self.throughput.add_seconds(time.perf_counter() - started, samples, warmup)


class StepTimer(TrainerCallback):
    """A ``Trainer`` callback timing each optimizer step into :attr:`throughput`: the first step
    (compiled mode) and every step that made a graph are warm-up steps."""

    def __init__(self, compiled: bool, device: torch.device | str | None):
        self.throughput = Throughput(warmup_calls=1 if compiled else 0)
        self._timer = CallTimer(self.throughput, device)
        self._started: tuple[float, int] | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = self._timer.start()

    def on_step_end(self, args, state, control, **kwargs):
        if self._started is not None:
            samples = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
            self._timer.stop(self._started, samples)
            self._started = None
