"""vae_lab.checks: the one-line error text (first_line) every command prints after `tool: error:`."""
import pytest

from vae_lab.checks import first_line


class Quiet(Exception):
    pass


@pytest.mark.parametrize("error,expected", [
    (Quiet(), "Quiet"),  # no message: the type's name, never an IndexError
    (Quiet("  \n \n"), "Quiet"),  # only blank lines: the same
    (ValueError("first line\nsecond line\nthird"), "first line"),
    (ValueError("\n\n  first line  \n"), "first line"),  # blank lines and spaces around it dropped
    (RuntimeError("Error(s) in loading state_dict for VAE:\n\tsize mismatch for w: [3] vs [4]\n\tmore"),
     "Error(s) in loading state_dict for VAE: size mismatch for w: [3] vs [4]"),  # a line ending in ':' takes the next
    (ValueError("ends with a colon:"), "ends with a colon:"),  # ... when there is one
])
def test_first_line(error, expected):
    assert first_line(error) == expected


def test_first_line_with_type():
    assert first_line(TypeError("bad type\nmore"), with_type=True) == "TypeError: bad type"
    assert first_line(OSError("disk full"), with_type=True) == "OSError: disk full"
    assert first_line(Quiet(), with_type=True) == "Quiet"  # no ": " left dangling


def test_first_line_length_limit():
    long = ValueError("x" * 1000)
    assert first_line(long) == "x" * 237 + "..."  # 240 characters by default
    assert first_line(long, limit=10) == "xxxxxxx..."
    assert first_line(ValueError("x" * 10), limit=10) == "x" * 10  # at the limit: untouched
    assert len(first_line(long, with_type=True, limit=50)) == 50 and first_line(long, with_type=True).startswith("ValueError: x")
