"""Integrations with other tools: Django (:mod:`flowq.contrib.django`) and pytest
(:mod:`flowq.contrib.pytest`, loaded by pytest as a plugin)."""
