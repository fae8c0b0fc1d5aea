"""core.errors.first_line / typed_first_line: one line of an exception for a user message."""
from core.errors import first_line, typed_first_line


def test_first_line_keeps_the_first_line_and_cuts_to_the_limit():
    e = OSError("unable to open file\n  File \"h5py/_objects.pyx\", line 54")
    assert first_line(e) == "unable to open file"
    assert first_line(e, 6) == "unable"


def test_empty_message_gives_the_type_name_or_nothing_after_the_colon():
    assert first_line(KeyError()) == "KeyError"
    assert typed_first_line(KeyError()) == "KeyError: "
    assert typed_first_line(ValueError("bad\nmore"), 2) == "ValueError: ba"
