"""Verification: write a design's project, build it, run it, compare it with the reference."""
