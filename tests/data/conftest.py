"""Fixtures of tests/data: tiny copies of the real dataset layouts (see real_fixtures.py)."""

from tests.helpers.real_formats import enwik8_dirs, pg19_dir, small_enwik8, wikitext_dir  # noqa: F401
