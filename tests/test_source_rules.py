"""Rules of the re-entrancy rule (csrc/core.pyx, at its top) that can be
checked as text over the compiled core's sources."""
import pathlib
import re

import pytest

CSRC = pathlib.Path(__file__).resolve().parent.parent / "csrc"
SOURCES = sorted(CSRC.glob("*.p*x*")) if CSRC.is_dir() else []

pytestmark = pytest.mark.skipif(not SOURCES, reason="the core's sources (csrc/) are not beside the tests")


def _code_lines(path):
    """(number, line) for each line of code, comments and docstrings blanked."""
    in_docstring = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        quotes = stripped.count('"""')
        if in_docstring or stripped.startswith('"""'):
            if quotes == 1:
                in_docstring = not in_docstring
            continue
        yield number, line.split("#", 1)[0]


def _violations(pattern):
    return [f"{path.name}:{number}: {line.strip()}" for path in SOURCES
            for number, line in _code_lines(path) if re.search(pattern, line)]


def test_no_list_repetition():
    # Cython fills [x] * n by reading n again after the allocation (a GC
    # point): with n an attribute, a gc callback can change it in between
    repetition = r"(^|[=(,:]|\breturn)\s*\[[^\[\]]*\]\s*\*"     # [x] * n, not a[i] * b
    assert not _violations(repetition), "use _nones(n): " + "; ".join(_violations(repetition))


def test_no_tuple_or_list_attribute_is_indexed_in_place():
    # loops index a local reference they own: an attribute may be replaced by
    # Python code at a GC point, and Cython's tuple indexing is unchecked
    attributes = set()
    for path in SOURCES:
        in_class = False
        for line in path.read_text().splitlines():
            if line and not line[0].isspace():
                in_class = line.startswith("cdef class ")
            found = re.match(r" {4}cdef (?:readonly |public )?(?:tuple|list) (\w+)", line)
            if in_class and found:
                attributes.add(found.group(1))
    assert {"values", "ps", "partials", "kids"} <= attributes
    bad = _violations(r"\.(%s)\[" % "|".join(sorted(attributes)))
    assert not bad, "index a local reference instead: " + "; ".join(bad)
