"""The Lambda entry: what each deployed function runs when its event arrives.

`wiring` composes the stages (sources, policy, response, actions, executors, notifiers) for one
invocation and holds no logic of its own; `intake` takes an event to a told report exactly once;
`decisions` are the approvals, rejections, releases and expiries; `flow_logs` and `captures` are the
flow-log and memory-capture functions. Nothing below this package imports it.
"""
