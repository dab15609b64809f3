"""Header names Diaspora puts on messages; part of the public interface.

A plain NATS client may read these on outputs and may set ``Nats-Msg-Id`` and
``Diaspora-Key`` on inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = [
    "ACTOR",
    "AGGREGATED",
    "BLOB",
    "BLOB_SIZE",
    "DEAD_REASON",
    "DEAD_SEQ",
    "DEAD_SUBJECT",
    "EMITTED_AT",
    "ITEM",
    "KEY",
    "MSG_ID",
    "PARTITION",
    "PARTITION_ITEM",
    "RECONSTRUCTED",
    "SOURCE",
    "THINNED",
    "VIEW",
    "item_number",
    "thinned",
]

#: JetStream's de-duplication id; Diaspora sets ``<actor>:<input subject>:<input seq>:<index>``.
MSG_ID: Final = "Nats-Msg-Id"
#: Id of the actor that emitted the message.
ACTOR: Final = "Diaspora-Actor"
#: The input that caused this output, ``<subject>:<seq>`` (absent for sources).
SOURCE: Final = "Diaspora-Source"
#: Present (value ``1``) when the item was made by a reconstructor, not observed.
RECONSTRUCTED: Final = "Diaspora-Reconstructed"
#: The emitting actor's own item number on this subject (1, 2, 3...; gaps mean lost items).
ITEM: Final = "Diaspora-Item"
#: How many item numbers right before this item its producer left out on purpose (its own
#: decimation, ``Actor.leave_out``): consumers neither ask for them nor report them lost.
THINNED: Final = "Diaspora-Thinned"
#: On an item made by the ``aggregate`` policy: how many items it combines.
AGGREGATED: Final = "Diaspora-Aggregated"
#: Partition key of the item, used by keyed scale-out.
KEY: Final = "Diaspora-Key"
#: On an item of a partitioned subject: its partition, and its producer's number within it.
PARTITION: Final = "Diaspora-Partition"
PARTITION_ITEM: Final = "Diaspora-Partition-Item"
#: Emit time, Unix seconds as a decimal string (for end-to-end latency).
EMITTED_AT: Final = "Diaspora-Emitted-At"
#: Payload too large to inline: ``<object-store bucket>/<object name>``, payload empty.
BLOB: Final = "Diaspora-Blob"
#: Size in bytes of the blob payload.
BLOB_SIZE: Final = "Diaspora-Blob-Size"
#: On a dead letter: why it was dead-lettered.
DEAD_REASON: Final = "Diaspora-Dead-Reason"
#: On a dead letter: the original subject and stream sequence.
DEAD_SUBJECT: Final = "Diaspora-Dead-Subject"
DEAD_SEQ: Final = "Diaspora-Dead-Seq"
#: On a view item: the name of the view that published it (its payload is references).
VIEW: Final = "Diaspora-View"


def item_number(headers: Mapping[str, str]) -> int | None:
    """The producer's own number of an item (its ``Diaspora-Item`` header), if it has one.

    >>> item_number({ITEM: "42"}), item_number({})
    (42, None)
    """
    value = headers.get(ITEM)
    return int(value) if value is not None and value.isdigit() else None


def thinned(headers: Mapping[str, str]) -> int:
    """How many item numbers before this one its producer left out on purpose (0: none).

    >>> thinned({THINNED: "3"}), thinned({})
    (3, 0)
    """
    value = headers.get(THINNED)
    return int(value) if value is not None and value.isdigit() else 0
