from flowq import shared_task

from orders.models import Order


@shared_task
def send_receipt(order_id: int) -> str:
    order = Order.objects.get(pk=order_id)  # committed before the task was sent
    order.receipt_sent = True
    order.save(update_fields=["receipt_sent"])
    return f"receipt for {order.item}"
