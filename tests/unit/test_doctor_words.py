"""A doctor line never ends mid-word."""

from __future__ import annotations

from chalicelib.commands.doctor import _brief, words


def test_a_long_reason_ends_at_a_word_with_an_ellipsis() -> None:
    text = "its bucket policy does not deny changing the Object Lock configuration " * 20
    said = words(text, 120)
    assert said.endswith(" …")
    assert said[:-2].split(" ")[-1] in text.split(" ")  # a whole word
    assert len(said) <= 122
    assert words("short", 120) == "short"
    assert _brief(RuntimeError(text)).endswith("…")
