"""aws-auth mappings are taken out line by line: every other line stays as it was (the bounds
admit only removals), or the removal is refused with the reason."""

from __future__ import annotations

import pytest
import yaml

from chalicelib.actions.eks.delete_access_entry import without_items

EKSCTL = """# comment kept
- groups:
  - system:bootstrappers
  rolearn: arn:aws:iam::111122223333:role/node
  username: system:node:{{EC2PrivateDNSName}}
- rolearn: "arn:aws:iam::111122223333:role/dev"
  groups: [devs]   # inline comment
- rolearn: arn:aws:iam::111122223333:role/ops
  groups:
    - ops
"""


def test_only_the_lines_of_the_removed_entry_go() -> None:
    lines = EKSCTL.splitlines(keepends=True)
    assert without_items(EKSCTL, [1]) == "".join(lines[:5] + lines[7:])
    assert without_items(EKSCTL, [0, 2]) == "".join(lines[:1] + lines[5:7])
    kept = without_items(EKSCTL, [1])
    assert kept is not None
    assert set(kept.splitlines()) <= set(EKSCTL.splitlines())  # what the server's bound checks


def test_removing_every_entry_removes_the_key() -> None:
    assert without_items(EKSCTL, [0, 1, 2]) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[{rolearn: a, groups: [x]}]", "not a block list"),
        ("- a\n- b\n", "not a block list of mappings"),
        (yaml.safe_dump([{"rolearn": "a", "groups": (g := ["x"])}, {"rolearn": "b", "groups": g}]), "read the same"),
    ],
    ids=["flow-style", "strings", "anchor-of-a-removed-entry"],
)
def test_what_cannot_be_cut_out_line_by_line_is_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        without_items(text, [0])
