"""Fixtures of tests/data: tiny copies of the real dataset layouts (see real_fixtures.py), and
the tokenizer families' hub folders."""

import pytest

from tests.helpers.real_formats import enwik8_dirs, pg19_dir, small_enwik8, wikitext_dir  # noqa: F401


@pytest.fixture(scope="session")
def families(tmp_path_factory):
    """Each tokenizer family's hub folder (tests/helpers/hf_tokenizers.py), made once."""
    pytest.importorskip("tokenizers")
    from tests.helpers.hf_tokenizers import FAMILIES, save_family  # noqa: PLC0415

    root = tmp_path_factory.mktemp("hub")
    return {name: save_family(name, root) for name in FAMILIES}
