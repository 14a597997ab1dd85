"""optopass: simulate optical hardware on Hugging Face encoders through torch.fx graph passes.

Public API::

    import optopass
    cfg = optopass.load_config("transform_cfg.yaml")
    gm = optopass.apply_optical_pass(model, cfg)
    optopass.calibrate(gm, batches)
    rows = optopass.report(gm)
    account = optopass.energy(gm, batch=8, seq_len=128, hardware="hw.yaml")  # photons and joules
    optopass.save(gm, "out/"); gm2 = optopass.load("out/")
"""

from .passes.apply import apply_optical_pass
from .passes.optical.calibrate import calibrate
from .tools.config import load_config
from .tools.energy import energy
from .tools.io import load, save
from .tools.report import report

__all__ = ["apply_optical_pass", "calibrate", "energy", "load", "load_config", "report", "save"]
