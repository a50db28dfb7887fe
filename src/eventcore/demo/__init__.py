"""A small bank, used by the demo (``python -m eventcore.demo``), the docs and the tests."""
