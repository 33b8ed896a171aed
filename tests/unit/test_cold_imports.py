"""What a cold start loads: the stand-in for pydantic's plugin loader (chalicelib/__init__.py) answers as
the real one does, and no source's event models load before its first event."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import subprocess
import sys

import chalicelib


def test_models_are_built_through_the_stand_in_and_the_real_loader_finds_no_plugin_either() -> None:
    assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == "__all__"
    from chalicelib.policy.model import RulesFile  # builds models: pydantic asked the loader in place

    assert RulesFile.model_fields
    loader = sys.modules["pydantic.plugin._loader"]
    assert loader.get_plugins() == ()
    import pydantic.plugin

    spec = importlib.machinery.PathFinder.find_spec("pydantic.plugin._loader", list(pydantic.plugin.__path__))
    assert spec is not None
    assert spec.loader is not None
    real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real)  # pydantic's own, with the same environment
    assert tuple(real.get_plugins()) == ()
    assert real.__file__ != getattr(loader, "__file__", None)  # the real one, not the stand-in again
    assert chalicelib.__file__


def test_a_cold_import_of_the_lambda_entry_loads_no_metadata_and_no_source_models() -> None:
    """Each source's event models load with its first event; the distributions' metadata never."""
    code = ("import sys, app\n"
            "loaded = [m for m in sys.modules if m == 'importlib.metadata' or m.startswith('chalicelib.sources.')]\n"
            "assert loaded == ['chalicelib.sources.patterns'], loaded")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
