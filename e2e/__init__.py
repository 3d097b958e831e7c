"""End-to-end checks against a live server: see run.py."""
