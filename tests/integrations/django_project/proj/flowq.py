import os

from flowq import Flowq

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Flowq("proj")
# Every FLOWQ_-prefixed Django setting: FLOWQ_BROKER_URL is broker_url, and so on.
app.config_from_object("django.conf:settings", namespace="FLOWQ")
# Import orders/tasks.py (and every installed app's tasks module) when a worker starts.
app.autodiscover_tasks()
