"""The response stage: from an incident and the rule that decided it to what was done.

`plan` holds the steps and their states, `targets` resolves what each action would touch (workload
→ pods, pod → node, instance → node), `guardrails` says why an action must not run, `approvals`
which steps wait for a human; `execute` runs a plan, `release` undoes one, and `report` and `audit`
say what happened. Reads and writes go through the gateways the entry hands in (`interfaces.py`),
never to AWS or Kubernetes directly.
"""
