"""The Lambda entry: what each deployed function runs when its event arrives.

`wiring` composes the stages (sources, policy, response, actions, executors, notifiers) for one
invocation and holds no logic of its own; `intake` takes an event to a told report exactly once;
`decisions` are the approvals, rejections, releases and expiries, `slack_route` the Slack button
route; `flow_logs`, `captures` and `key_snapshot` are the flow-log, memory-capture and key-policy
functions. Nothing below this package imports it.
"""
