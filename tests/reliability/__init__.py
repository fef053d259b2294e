"""Fault-injection and bad-input tests (see ../shared/reliability-scenarios.md)."""
