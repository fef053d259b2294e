from django.db import transaction

from flowq.contrib.django import delay_on_commit
from orders.models import Order
from orders.tasks import send_receipt


def place_order(item: str) -> Order:
    with transaction.atomic():
        order = Order.objects.create(item=item)
        # sent when the transaction commits; never if it rolls back
        delay_on_commit(send_receipt, order.pk)
    return order
