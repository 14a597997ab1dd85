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


def _location(module) -> str | None:
    """Where a module was loaded from: its file, or its package folder."""
    path = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", None) or []), None)
    return os.path.realpath(path) if path and os.path.isabs(path) else None


def _in_tree(location: str | None) -> bool:
    """Whether `location` is library source (the package root; tests/ and examples/, which are
    not part of the installed package, excluded)."""
    root = os.path.realpath(os.path.dirname(optopass.__file__))
    if location is None or not (location == root or location.startswith(root + os.sep)):
        return False
    return not any((location + os.sep).startswith(os.path.join(root, d) + os.sep) for d in ("tests", "examples"))


def test_every_module_imports_under_its_one_name():
    names = _tree_modules()
    assert {"optopass.passes.capture", "optopass.passes.optical.rewrite", "optopass.tools.config"} <= set(names)
    for name in names:
        importlib.import_module(name)
    relative = [n[len("optopass."):] for n in names if n != "optopass"]
    for key, module in list(sys.modules.items()):
        if key.startswith("optopass.") or key == "optopass":
            continue
        # pytest's importlib mode registers the test folders (tests/passes -> "passes") as
        # modules too; only a module loaded from the library's own source is a second import
        for rel in relative:
            if key == rel or key.endswith("." + rel):
                assert not _in_tree(_location(module)), f"{key!r} duplicates optopass.{rel}"


def test_each_source_file_is_loaded_once():
    _ = [importlib.import_module(n) for n in _tree_modules()]
    by_file: dict[str, list[str]] = {}
    for key, module in list(sys.modules.items()):
        location = _location(module)
        if _in_tree(location):
            by_file.setdefault(location, []).append(key)
    doubles = {p: ks for p, ks in by_file.items() if len(ks) > 1}
    assert not doubles, f"modules imported under two names: {doubles}"
    assert all(ks[0] == "optopass" or ks[0].startswith("optopass.") for ks in by_file.values()), by_file


def test_registries_hold_each_entry_once():
    from optopass.passes.optical import registry

    assert sorted(registry.KINDS) == ["attn", "fc"]
    assert "optical_transformer" in registry.TECHNOLOGIES
    assert registry.TECHNOLOGIES["optical_transformer"].__module__ == "optopass.passes.optical.optical_transformer"
