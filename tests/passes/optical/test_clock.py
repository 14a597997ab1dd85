"""The dither counters of a transformed model: one DitherClock, called last in the graph,
counts every dithered site once per forward (one batched op), and the keys follow the counters
and a loaded seed."""

import torch

import optopass
from optopass.passes.optical import quant
from optopass.passes.optical.clock import CLOCK, DitherClock
from optopass.passes.optical.sites import optical_sites
from tests.conftest import hf_inputs, tiny_hf_model

FC_ROUNDED = {"fc": {"q_dither": False}, "attn": {}}


def _optical(cfg=None, seed=None):
    if seed is not None:
        cfg = {"fc": {"q_init_seed": seed}, "attn": {"q_init_seed": seed}}
    gm = optopass.apply_optical_pass(tiny_hf_model("roberta", "eager"), cfg)
    optopass.calibrate(gm, [hf_inputs(2, 8)])
    return gm.eval()


def _counters(gm):
    return {name: int(site.counter) for name, site in optical_sites(gm)}


def test_one_clock_is_the_last_call_and_counts_each_dithered_site_once_per_forward():
    gm = _optical(FC_ROUNDED)
    calls = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == CLOCK]
    assert len(calls) == 1 and calls[0].next.op == "output"
    clock = gm.get_submodule(CLOCK)
    sites = dict(optical_sites(gm))
    assert isinstance(clock, DitherClock) and set(map(id, clock.sites)) == set(map(id, sites.values()))
    assert all(site.clocked for site in sites.values())
    disabled = next(name for name, site in sites.items() if site.kind == "attn")
    sites[disabled].enabled = False
    before = _counters(gm)
    with torch.no_grad():
        for _ in range(3):
            gm(**hf_inputs(2, 8))
    after = _counters(gm)
    for name, site in sites.items():
        want = 3 if site.kind == "attn" and name != disabled else 0  # fc rounds; one attn site off
        assert after[name] - before[name] == want, name
    assert any(after[n] > before[n] for n in sites)


def test_a_standalone_site_counts_its_own_calls_and_a_clocked_one_does_not():
    gm = _optical()
    name, site = next((n, s) for n, s in optical_sites(gm) if s.kind == "fc" and s.op == "linear")
    weight = gm.get_parameter(next(n for n, _ in gm.named_parameters() if n.endswith("query.weight")))
    x = torch.randn(2, 5, weight.shape[1])
    start = int(site.counter)
    with torch.no_grad():
        site(x, weight)
    assert int(site.counter) == start  # the graph's clock counts it, and it was not called
    site.clocked = False
    with torch.no_grad():
        a = site(x, weight)
        b = site(x, weight)
    assert int(site.counter) == start + 2 and not torch.equal(a, b)


def test_keys_follow_the_counter_and_a_loaded_seed():
    a, b = _optical(seed=0), _optical(seed=5)
    site_a, site_b = dict(optical_sites(a)), dict(optical_sites(b))
    for name, site in site_b.items():
        want = quant.stream_key(site.seed, site.site_id, site.counter)
        assert int(site.current_key()) == int(want)
        assert int(site.current_key()) != int(site_a[name].current_key())
    b.load_state_dict(a.state_dict())
    for name, site in site_b.items():
        assert int(site.seed) == 0 and int(site.current_key()) == int(site_a[name].current_key())
    inputs = hf_inputs(2, 8)
    with torch.no_grad():
        assert torch.equal(a(**inputs).logits, b(**inputs).logits)


def test_a_site_pickles_with_its_state():
    import pickle

    gm = _optical(seed=3)
    name, site = next(iter(optical_sites(gm)))
    copy = pickle.loads(pickle.dumps(site))
    assert all(torch.equal(a, b) for a, b in zip(site.buffers(), copy.buffers()))
    copy.load_state_dict(site.state_dict())  # the post-load hook survived the round trip
    assert int(copy.current_key()) == int(site.current_key())
