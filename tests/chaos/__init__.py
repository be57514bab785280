"""Fault scenarios against real processes (see harness.py)."""
