"""Structum Database benchmarks: every backend against its raw driver, interleaved in one run.

Run from the repository root: ``python -m benchmarks`` (``--smoke`` in CI). See README.md.
"""
