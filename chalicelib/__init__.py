"""eks-responder: everything but the Lambda handlers (those are in app.py)."""

import os
import sys
import types

# The responder uses no pydantic plugin. Left to look for them, pydantic reads the metadata of every
# installed distribution when the first model is built: about 20 ms of every cold start.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

# With plugins off, pydantic's plugin loader finds none; but importing the loader imports
# importlib.metadata (email, zipfile, csv...), another 15 ms of every cold start and every command,
# used for nothing else. A loader that finds none stands in for it, unless pydantic has loaded its
# own already (tests/unit/test_cold_imports.py holds the two to the same answer).
if os.environ["PYDANTIC_DISABLE_PLUGINS"] in ("__all__", "1", "true") and "pydantic.plugin._loader" not in sys.modules:
    _no_plugins = types.ModuleType("pydantic.plugin._loader", "Pydantic's plugin loader with plugins off: none.")
    _no_plugins.get_plugins = lambda: ()  # type: ignore[attr-defined]
    sys.modules["pydantic.plugin._loader"] = _no_plugins
