"""Orders over HTTP: POST places one, POST on it cancels it, GET lists them or shows one."""

from __future__ import annotations

from eventgate import ItemView, ListView, Resource

from .domain import CancelOrder, PlaceOrder
from .read_models import order_details

orders = Resource(
    "/api/orders",
    create=PlaceOrder,
    post=CancelOrder,  # not DELETE: a cancelled order stays, readable, with its status
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
"""Orders: placed by POST `{"lines": [{"item": id, "count": n}, ...]}`, cancelled by a POST on
the order (`domain-model=CancelOrder`, optional: it is the only command there). A cancel is a
state change, not a deletion: the order stays readable with status `cancelled`, so DELETE
(after which a resource is gone) would be the wrong method. Cancelling an order that is
already rejected or cancelled is a 202 that records nothing."""
