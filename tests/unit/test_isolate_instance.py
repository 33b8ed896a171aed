"""The move through the transient open group never leaves an interface in it."""

from __future__ import annotations

import pytest

from chalicelib.actions.ec2.isolate_instance import _move


class _Interfaces:
    def __init__(self, fail_on: str) -> None:
        self.groups: dict[str, list[str]] = {"eni-1": ["sg-app"]}
        self.fail_on = fail_on

    def set_interface_groups(self, interface_id: str, group_ids: list[str]) -> None:
        if group_ids == [self.fail_on]:
            raise RuntimeError("UnauthorizedOperation")
        self.groups[interface_id] = group_ids


def test_a_failed_second_step_puts_the_interface_back_in_its_own_groups() -> None:
    ec2 = _Interfaces(fail_on="sg-isolation")
    with pytest.raises(RuntimeError):
        _move(ec2, "eni-1", ["sg-app"], "sg-isolation", "sg-open")  # type: ignore[arg-type]
    assert ec2.groups == {"eni-1": ["sg-app"]}  # not left in sg-open


def test_the_interface_ends_in_the_isolation_group() -> None:
    ec2 = _Interfaces(fail_on="none")
    _move(ec2, "eni-1", ["sg-app"], "sg-isolation", "sg-open")  # type: ignore[arg-type]
    assert ec2.groups == {"eni-1": ["sg-isolation"]}
