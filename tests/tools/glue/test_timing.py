"""StreamTimer: steady calls timed in spans without waiting for the GPU between them; warm-up
calls alone; a span in which a graph was made counted as warm-up. A fake clock, fake
synchronization and a fake compile counter give the exact seconds to compare with."""

import pytest

from optopass.tools.glue import timing

# (shape, seconds, samples, compiles) of each call
CALLS = [("A", 1, 10, False), ("A", 2, 10, False), ("A", 3, 10, False), ("B", 4, 5, False), ("B", 5, 5, False),
         ("A", 6, 10, True), ("A", 7, 10, False)]


@pytest.fixture
def fake(monkeypatch):
    state = {"now": 0.0, "graphs": 0, "events": []}
    monkeypatch.setattr(timing.time, "perf_counter", lambda: state["now"])
    monkeypatch.setattr(timing, "compile_count", lambda: state["graphs"])
    monkeypatch.setattr(timing, "synchronize", lambda device: state["events"].append("sync"))
    return state


def _run(fake, device):
    speed = timing.Throughput(warmup_calls=1)
    timer = timing.StreamTimer(speed, device)
    for i, (shape, seconds, samples, compiles) in enumerate(CALLS):
        def fn(i=i, seconds=seconds, compiles=compiles):
            fake["events"].append(f"call{i}")
            fake["now"] += seconds
            fake["graphs"] += compiles
            return i
        assert timer.call(fn, samples, shape) == i
    timer.close()
    return speed


def test_steady_calls_on_a_gpu_are_timed_in_spans_without_waiting_between_them(fake):
    speed = _run(fake, "cuda")
    # warm-up: call0 (first A), call3 (first B), and the span call4-call5, in which call5 compiled
    assert (speed.compile_seconds, speed.warmup_samples) == (1 + 4 + 5 + 6, 10 + 5 + 5 + 10)
    # steady: the span call1-call2, ended by the warm-up call3, and call6, ended by close()
    assert (speed.seconds, speed.samples) == (2 + 3 + 7, 10 + 10 + 10)
    events = fake["events"]
    assert events[events.index("call1") + 1] == "call2"  # no wait between steady calls
    assert events[events.index("call4") + 1] == "call5"
    assert events[-2:] == ["call6", "sync"]


def test_each_call_on_a_cpu_is_its_own_span(fake):
    speed = _run(fake, "cpu")
    assert (speed.compile_seconds, speed.warmup_samples) == (1 + 4 + 6, 10 + 5 + 10)
    assert (speed.seconds, speed.samples) == (2 + 3 + 5 + 7, 10 + 10 + 5 + 10)
    assert speed.samples_per_second == pytest.approx(35 / 17)
