"""The executors: the only code that calls AWS and Kubernetes. Each implements a gateway protocol
of `chalicelib/interfaces.py` (or stores what the response keeps: plans, the ledger, caps, evidence)."""
