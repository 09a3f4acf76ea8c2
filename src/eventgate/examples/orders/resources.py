"""Orders over HTTP: POST places one, DELETE cancels it, GET lists them or shows one."""

from __future__ import annotations

from eventgate import ItemView, ListView, Resource

from .domain import CancelOrder, PlaceOrder
from .read_models import order_details

orders = Resource(
    "/api/orders",
    create=PlaceOrder,
    delete=CancelOrder,
    list=ListView(
        order_details,
        fields=["id", "status"],
        order=["id"],
        filters=["status"],
        model="OrderListCollection",
    ),
    item=ItemView(
        order_details,
        fields=["id", "status", "reason", "lines", "settled", "version"],
        model="OrderDetails",
    ),
)
"""Orders: placed by POST `{"lines": [{"item": id, "count": n}, ...]}`, cancelled by DELETE
(a logical cancel: the order stays, with status `cancelled`; cancelling an order that is
already rejected or cancelled is a 202 that records nothing)."""
