"""VPC Flow Logs: read (S3 objects, CloudWatch Logs payloads), detect, and group into findings.

The hot path is a compiled first pass (`_prefilter.c`) and standard-library Python over bytes:
see docs/performance.md and `bench/flowlogs.py` for why, and for the figures.
"""
