from __future__ import annotations

import pytest

from chalicelib.errors import ConfigError
from chalicelib.settings import DEFAULT_PROTECTED_NAMESPACES, Settings


def test_defaults_are_safe() -> None:
    settings = Settings.from_env({})
    assert settings.dry_run is True
    assert settings.protected_namespaces == DEFAULT_PROTECTED_NAMESPACES
    assert "eks-responder" in settings.all_protected_namespaces
    assert settings.max_nodes_cordoned_per_hour == 3


def test_lists_booleans_and_numbers_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "DRY_RUN": "false",
            "PROTECTED_NAMESPACES": "a, b,,",
            "PROTECTED_NODE_LABELS": "critical=true,gpu",
            "MAX_NODES_CORDONED_PER_HOUR": "0",
            "RESPONDER_NAMESPACE": "security",
        }
    )
    assert settings.dry_run is False
    assert settings.protected_namespaces == ("a", "b")
    assert settings.all_protected_namespaces == ("a", "b", "security")
    assert settings.protected_node_labels == ("critical=true", "gpu")
    assert settings.max_nodes_cordoned_per_hour == 0


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DRY_RUN": "maybe"}, "DRY_RUN='maybe' is not a boolean"),
        ({"MAX_NODES_CORDONED_PER_HOUR": "three"}, "not a whole number"),
        ({"MAX_NODES_CORDONED_PER_HOUR": "-1"}, "must not be negative"),
        ({"FLOW_LOGS_BUCKET": "logs-{acount}"}, "is not a bucket name"),
        ({"FLOW_LOGS_BUCKET": "Logs"}, "is not a bucket name"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_a_flow_log_bucket_per_account_is_named_by_its_slots() -> None:
    current = Settings.from_env({"FLOW_LOGS_BUCKET": "acme-flow-logs-{account}-{region}"})
    assert current.flow_logs_bucket_of("111122223333", "eu-west-1") == "acme-flow-logs-111122223333-eu-west-1"
    assert Settings.from_env({"FLOW_LOGS_BUCKET": "central"}).flow_logs_bucket_of("111122223333", "x") == "central"
    assert Settings().flow_logs_bucket_of("111122223333", "x") is None


def test_account_overrides_change_only_what_may_differ_per_account() -> None:
    import json

    from chalicelib.errors import ConfigError

    base = {"DRY_RUN": "false", "PROTECTED_NAMESPACES": "kube-system", "MANAGED_ACCOUNTS": "111122223333"}
    overrides = {"111122223333": {"DRY_RUN": "true", "PROTECTED_NAMESPACES": "kube-system,payments"}}
    current = Settings.from_env({**base, "ACCOUNT_OVERRIDES": json.dumps(overrides)})
    member = current.for_account("111122223333")
    assert (member.dry_run, member.protected_namespaces) == (True, ("kube-system", "payments"))
    assert current.for_account("444455556666") is current
    assert (current.dry_run, current.protected_namespaces) == (False, ("kube-system",))
    for bad, words in [("[]", "must map"), ("{", "not JSON"), ('{"1234": {}}', "12-digit"),
                       ('{"111122223333": {"SLACK_WEBHOOK_SECRET": "x"}}', "cannot differ per account")]:  # fmt: skip
        with pytest.raises(ConfigError, match=words):
            Settings.from_env({"ACCOUNT_OVERRIDES": bad})
