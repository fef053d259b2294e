"""The Django example of docs/integrations.md, for real: a tiny project (SQLite, in
``django_project/``) whose flowq app reads Django's settings, autodiscovers the
``orders`` app's shared task, and sends it when the order's transaction commits. A real
worker (``flowq -A proj worker``, started in another directory) runs it and updates the
row the task was sent about; a rolled-back transaction sends nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, wait_for

PROJECT = Path(__file__).resolve().parent / "django_project"
pytestmark = pytest.mark.timeout(150)

PRODUCER = '''
import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
django.setup()

from django.core.management import call_command
from django.db import transaction

from flowq.contrib.django import delay_on_commit
from orders.models import Order
from orders.services import place_order
from orders.tasks import send_receipt

call_command("migrate", run_syncdb=True, verbosity=0)
order = place_order("book")


class Rollback(Exception):
    pass


try:
    with transaction.atomic():
        doomed = Order.objects.create(item="doomed")
        delay_on_commit(send_receipt, doomed.pk)  # must never be sent
        raise Rollback
except Rollback:
    pass

deadline = time.monotonic() + 60
while not Order.objects.get(pk=order.pk).receipt_sent:
    assert time.monotonic() < deadline, "the receipt task did not run"
    time.sleep(0.05)
print(send_receipt.delay(order.pk).get(timeout=60))
print(Order.objects.count())
'''


def test_an_order_placed_in_a_transaction_gets_its_receipt_from_a_worker(tmp_path: Path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLOWQ_BROKER_URL", "FLOWQ_RESULT_BACKEND", "DJANGO_SETTINGS_MODULE")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), str(PROJECT)]),
               ORDERS_DB=str(tmp_path / "orders.sqlite3"), FLOWQ_DATA_DIR=str(tmp_path / "q"))
    (tmp_path / "producer.py").write_text(PRODUCER)
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        worker = subprocess.Popen([sys.executable, "-m", "flowq", "-A", "proj", "worker",
                                   "-c", "1"], cwd=tmp_path, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "  tasks:" in log.read_text() or worker.poll() is not None,
                 timeout=60, what="the worker's banner")
        produced = subprocess.run([sys.executable, "producer.py"], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=100)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    text = log.read_text()
    assert "  tasks:       orders.tasks.send_receipt" in text.splitlines(), text
    assert produced.returncode == 0, produced.stderr + text
    assert produced.stdout.splitlines() == ["receipt for book", "1"]  # no doomed order
    # the committed order's task and the explicit one; the rolled-back one never arrived
    received = [line for line in text.splitlines()
                if "orders.tasks.send_receipt[" in line and line.endswith("received")]
    assert len(received) == 2, text
