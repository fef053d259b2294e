"""Finding task modules: ``app.autodiscover_tasks(packages, related_name="tasks")``.

As in Celery, each package's ``<package>.tasks`` module is imported so its tasks
(usually ``@shared_task``) register; a package without that module is skipped, while an
error inside one (or a package that does not exist) is raised. With no packages, the
installed apps of a configured Django project are used.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable

from flowq.exceptions import ConfigurationError

Packages = Iterable[str] | Callable[[], Iterable[str]] | None


def django_packages() -> list[str]:
    """The names of the installed Django apps (setting Django up if it is not yet)."""
    try:
        import django
        from django.apps import apps
        from django.conf import settings
    except ImportError:
        raise ConfigurationError("autodiscover_tasks() with no packages reads Django's "
                                 "INSTALLED_APPS, but Django is not installed: pass the "
                                 "packages, e.g. autodiscover_tasks(['billing'])") from None
    if not (settings.configured or os.environ.get("DJANGO_SETTINGS_MODULE")):
        raise ConfigurationError("autodiscover_tasks() with no packages reads Django's "
                                 "INSTALLED_APPS, but DJANGO_SETTINGS_MODULE is not set: set "
                                 "it (e.g. os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
                                 "'proj.settings')) or pass the packages")
    if not apps.ready:
        django.setup()
    return [config.name for config in apps.get_app_configs()]


def import_task_modules(packages: Packages, related_name: str | None = "tasks") -> list[str]:
    """Import ``<package>.<related_name>`` for each package; return the modules imported."""
    names = packages() if callable(packages) else packages
    imported: list[str] = []
    for package in (django_packages() if names is None else list(names)):
        module = f"{package}.{related_name}" if related_name else package
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue  # this package has no tasks module
            raise
        imported.append(module)
    return imported
