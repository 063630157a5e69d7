"""The frozen app's self-test checks, run here from the source tree too: a check that cannot pass
on a working build (as the document-search one once did, after search began dropping files that
are gone) is found by `make test`, not only once the installers are built."""

from __future__ import annotations

import asyncio

from desktop.ui.self_test import _document_search_problem, _renderer_parts_missing


def test_the_self_tests_document_search_check_passes_on_a_working_build():
    assert _document_search_problem() == ""


def test_the_self_tests_renderer_check_passes_on_a_working_build(qapp):
    assert asyncio.run(_renderer_parts_missing()) == ""
