"""The DICOM receiver: association policy, C-ECHO and C-STORE over pynetdicom."""

from node.receiver.associations import AssociationLog, AssociationTracker, NodeIdentity
from node.receiver.negotiation import CallerPolicy
from node.receiver.server import Receiver
from node.receiver.store import StoreHandler
from node.receiver.validation import Rejection

__all__ = [
    "AssociationLog",
    "AssociationTracker",
    "CallerPolicy",
    "NodeIdentity",
    "Receiver",
    "Rejection",
    "StoreHandler",
]
