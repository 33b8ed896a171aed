from __future__ import annotations

from chalicelib.interfaces import INCIDENT_ANNOTATION, INCIDENT_LABEL, MANAGED_BY_LABEL, label_value, responder_marks


def test_first_incident_keeps_the_label_and_later_ones_are_listed() -> None:
    labels, annotations = responder_marks("aaa")
    assert labels == {MANAGED_BY_LABEL: "eks-responder", INCIDENT_LABEL: "aaa"}
    assert annotations == {INCIDENT_ANNOTATION: "aaa"}
    marked = {"metadata": {"labels": labels, "annotations": annotations}}
    labels2, annotations2 = responder_marks("bbb", marked)
    assert labels2[INCIDENT_LABEL] == "aaa"
    assert annotations2[INCIDENT_ANNOTATION] == "aaa,bbb"
    again = {"metadata": {"labels": labels2, "annotations": annotations2}}
    assert responder_marks("aaa", again) == (labels2, annotations2)


def test_label_values_are_made_valid() -> None:
    assert label_value("6ebf5144204836f3761de75eba0ada67") == "6ebf5144204836f3761de75eba0ada67"
    assert label_value("replay/one two") == "replay-one-two"
    assert len(label_value("x" * 100)) == 63
    assert label_value("///") == "unknown"
