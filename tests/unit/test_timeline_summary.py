"""The timeline's summary: what a person on call reads first."""

from __future__ import annotations

from chalicelib.commands.timeline import Entry, Timeline, summary


def _entries() -> list[Entry]:
    return [
        Entry("2026-12-01T10:00:01Z", "response", "k8s:label-pod", "p/web", "succeeded", "", step=1),
        Entry("2026-12-01T10:00:02Z", "response", "k8s:isolate-pod", "p/web", "awaiting-approval", "", step=2),
        Entry("2026-12-01T10:00:03Z", "response", "ec2:isolate-instance", "i-0abc", "failed", "", step=3),
        Entry("2026-12-01T10:05:00Z", "approved", "k8s:isolate-pod", "p/web", "succeeded", "", "cli:a", step=2),
    ]


def test_it_says_contained_in_how_long_and_what_failed_and_no_longer_what_was_approved() -> None:
    said = summary(Timeline("i", time_to_contain=42.0), _entries())
    assert said[0] == "Contained 42 s after the finding's last update."
    assert said[1] == "Failed: step 3 ec2:isolate-instance on i-0abc"  # step 2 was approved and ran since
    assert not any("Waits" in line for line in said)


def test_a_time_no_live_response_takes_is_said_to_be_a_replay_or_a_held_delivery() -> None:
    said = summary(Timeline("i", time_to_contain=395.5 * 3600), _entries()[:2])
    assert said[0].startswith("Contained, 395.5 h after the finding's last update: too long for a live response")
    assert said[1] == "Waits for a human: step 2 k8s:isolate-pod on p/web"


def test_nothing_contained_and_nothing_pending_is_said_plainly() -> None:
    assert summary(Timeline("i"), []) == ["Not contained: no containment step succeeded live.",
                                          "Nothing waits for a human; no step failed."]  # fmt: skip
