"""Every module of the tree is imported once, as ``optopass.*``.

The repository root is the package, so pytest started from it could import the tree a second time
under the checkout's folder name (``main.passes`` beside ``optopass.passes``): registries would fill
twice and ops defined at import would be defined twice. This fails if that happens.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import optopass


def _tree_modules() -> list[str]:
    names = ["optopass"]
    for info in pkgutil.walk_packages(optopass.__path__, "optopass."):
        names.append(info.name)
    return names


def test_every_module_imports_under_its_one_name():
    names = _tree_modules()
    assert {"optopass.passes.capture", "optopass.passes.optical.rewrite", "optopass.tools.config"} <= set(names)
    for name in names:
        importlib.import_module(name)
    relative = [n[len("optopass."):] for n in names if n != "optopass"]
    for key in list(sys.modules):
        if key.startswith("optopass.") or key == "optopass":
            continue
        for rel in relative:
            if "." in rel:  # a dotted tail such as passes.capture cannot be another library's
                assert not (key == rel or key.endswith("." + rel)), f"{key!r} duplicates optopass.{rel}"


def test_each_source_file_is_loaded_once():
    _ = [importlib.import_module(n) for n in _tree_modules()]
    root = os.path.realpath(os.path.dirname(optopass.__file__))
    by_file: dict[str, list[str]] = {}
    for key, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or not os.path.isabs(path):  # torch.ops / torch.classes report a bare name
            continue
        path = os.path.realpath(path)
        if path.startswith(root + os.sep) and os.sep + "tests" + os.sep not in path[len(root):]:
            by_file.setdefault(path, []).append(key)
    doubles = {p: ks for p, ks in by_file.items() if len(ks) > 1}
    assert not doubles, f"modules imported under two names: {doubles}"
    assert all(ks[0].startswith("optopass") for ks in by_file.values()), by_file


def test_registries_hold_each_entry_once():
    from optopass.passes.optical import registry

    assert sorted(registry.KINDS) == ["attn", "fc"]
    assert "optical_transformer" in registry.TECHNOLOGIES
    assert registry.TECHNOLOGIES["optical_transformer"].__module__ == "optopass.passes.optical.optical_transformer"
