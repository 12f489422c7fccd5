"""Maintainer scripts for the offline tooling (run by hand, not imported by the app)."""
