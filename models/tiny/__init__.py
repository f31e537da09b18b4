"""Tiny random-weight models in the released formats, built in-process (tests profile, test fixtures)."""
