"""eks-responder: everything but the Lambda handlers (those are in app.py)."""
