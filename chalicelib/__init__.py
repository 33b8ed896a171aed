"""eks-responder: everything but the Lambda handlers (those are in app.py)."""

import os

# The responder uses no pydantic plugin. Left to look for them, pydantic reads the metadata of every
# installed distribution when the first model is built: about 20 ms of every cold start.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
