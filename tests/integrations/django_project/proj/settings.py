"""A tiny Django project for the tests of docs/integrations.md."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "tests-only"
USE_TZ = True
INSTALLED_APPS = ["orders"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ORDERS_DB", BASE_DIR / "db.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

# flowq: None means the embedded default (SQLite files beside proj/flowq.py)
FLOWQ_BROKER_URL = os.environ.get("FLOWQ_BROKER_URL")
FLOWQ_RESULT_BACKEND = os.environ.get("FLOWQ_RESULT_BACKEND")
FLOWQ_TASK_ACKS_LATE = True
