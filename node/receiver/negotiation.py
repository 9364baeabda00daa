"""What the receiver negotiates, and with whom.

SOP classes and transfer syntaxes: instances are stored exactly as received,
so every listed transfer syntax is accepted without decoding; other SOP
classes are refused at negotiation. Callers: the calling-AE allowlist,
optionally bound to peer addresses. The TLS contexts are in ``node.tls``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    LegacyConvertedEnhancedMRImageStorage,
    MRImageStorage,
    RLELossless,
)

from node.settings import AllowedCaller

VERIFICATION = UID("1.2.840.10008.1.1")

STORAGE_SOP_CLASSES: tuple[UID, ...] = (
    MRImageStorage,
    EnhancedMRImageStorage,
    LegacyConvertedEnhancedMRImageStorage,
)

TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
)

# The modality every accepted SOP class requires.
MODALITY = "MR"


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class CallerPolicy:
    """Decides on an association request from its calling AE title and peer address.

    No allowed callers means any caller is accepted. A title listed without
    addresses is accepted from anywhere; with addresses, only from those.
    """

    def __init__(self, allowed: Sequence[AllowedCaller]) -> None:
        self._open = not allowed
        self._callers: dict[str, list[_Network] | None] = {}
        for caller in allowed:
            title = caller.ae_title.strip()
            networks = [ipaddress.ip_network(a, strict=False) for a in caller.addresses]
            known = self._callers.get(title, [])
            if not networks or known is None:
                self._callers[title] = None
            else:
                self._callers[title] = [*known, *networks]

    def refusal(self, calling_ae: str, address: str) -> str | None:
        """Why the caller is refused, or ``None`` if it is allowed."""
        if self._open:
            return None
        title = calling_ae.strip()
        if title not in self._callers:
            return f"calling AE title {title!r} is not in dicom.allowed_callers"
        networks = self._callers[title]
        if networks is None:
            return None
        peer = _peer_ip(address)
        if peer is not None and any(peer in network for network in networks):
            return None
        return f"calling AE title {title!r} is not allowed from address {address}"


def _peer_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        peer = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
        return peer.ipv4_mapped
    return peer
