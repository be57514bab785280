# cython: language_level=3
"""Compiled admission core (filled in by the scheduling-core work)."""
