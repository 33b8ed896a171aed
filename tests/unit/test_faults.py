"""Which failures make an event worth delivering again."""

from __future__ import annotations


def test_a_refusal_that_lasts_is_not_delivered_again_and_a_passing_fault_is() -> None:
    from chalicelib.executors import faults
    from chalicelib.executors.kube_http import ApiError, TransportError

    assert faults.transient(ApiError(503, "unavailable"))
    assert faults.transient(TransportError("reset"))
    assert not faults.transient(ApiError(403, "forbidden"))  # retried in place, then reported, not redelivered
    assert not faults.transient(ValueError("a bug"))
