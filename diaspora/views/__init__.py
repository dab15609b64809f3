"""Resilient data views: joins of several streams under count constraints, by reference."""

from diaspora.views._keeper import PinKeeper, group_id
from diaspora.views._pins import PinnedMessage, Pins, pin_bucket, read_pin

__all__ = ["PinKeeper", "PinnedMessage", "Pins", "group_id", "pin_bucket", "read_pin"]
