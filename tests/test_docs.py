"""Every code example in README.md and docs/*.md runs, and its printed output
is checked: a ```python block runs as it is (a block of `>>>` lines is a
doctest, its output compared).  The blocks of one page share a namespace,
in order, as a reader running them one after another would.

`<!-- skip: start if(BACKEND == "python", reason="...") -->` ... `<!-- skip:
end -->` around a block skips its examples on the pure engine (a training
run that takes a minute there).
The examples run with the engine `import autograd` picks: the compiled core
in the main run, the pure one under AUTOGRAD_PUREPYTHON=1.
"""
import os
import unittest
from pathlib import Path

import pytest
import sybil                                    # the test extra: it runs the pages' examples
from sybil.parsers.markdown import ClearNamespaceParser, PythonCodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("**/*.md")])
PARSE = sybil.Sybil(parsers=[PythonCodeBlockParser(), SkipParser(), ClearNamespaceParser()])


def test_the_pages_are_found():
    names = {page.relative_to(ROOT).as_posix() for page in PAGES}
    assert {"README.md", "docs/index.md", "docs/getting-started.md", "docs/training.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[page.relative_to(ROOT).as_posix() for page in PAGES])
def test_the_examples_run_as_written(page, tmp_path, monkeypatch):
    import autograd
    monkeypatch.chdir(tmp_path)             # pictures and files land in a scratch directory
    document = PARSE.parse(page)
    document.namespace.update(BACKEND=autograd.BACKEND)
    ran = 0
    for example in document:
        try:
            example.evaluate()
        except unittest.SkipTest:
            continue
        ran += 1
    if "```python" in page.read_text(encoding="utf-8") and not os.environ.get("AUTOGRAD_PUREPYTHON"):
        assert ran, f"{page.name}: no example ran"
