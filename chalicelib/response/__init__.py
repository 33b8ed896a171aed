"""The response stage: an incident's targets, the guardrails, and (for image scans) its CVEs.

Incident → targets (what the rule's actions would touch) → guardrail verdicts → the plan that
executors carry out. Nothing here talks to AWS or Kubernetes directly: reads go through the
gateways the responder passes in.
"""
