"""A-ASSOCIATE-RJ in words (PS3.8 9.3.4, Table 9-21), for the receiver's association rows, the
sender's delivery errors and ``echo``: an administrator reads a reason, not three numbers."""

from __future__ import annotations

RESULTS = {1: "permanently", 2: "transiently"}
# (source, reason/diagnostic)
REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 1): "no reason given (ACSE)",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded: too many concurrent associations",
}
CALLING_AE_UNKNOWN = (1, 3)
CALLED_AE_UNKNOWN = (1, 7)
# Rejections retrying cannot change: only a change of the peer's configuration or ours mends them.
AE_TITLE_UNKNOWN = frozenset({CALLING_AE_UNKNOWN, CALLED_AE_UNKNOWN})


def reason_in_words(source: int | None, reason: int | None) -> str:
    """Why an association was rejected, from its source and reason/diagnostic."""
    return REASONS.get((source or 0, reason or 0), f"reason {reason} from source {source}")


def rejection_reason(result: int | None, source: int | None, reason: int | None) -> tuple[str, bool]:
    """An A-ASSOCIATE-RJ in words, and whether it is final (an AE title not recognised, permanently)."""
    how = RESULTS.get(result or 0, f"(result {result})")
    return (f"rejected {how}: {reason_in_words(source, reason)}",
            result == 1 and (source, reason) in AE_TITLE_UNKNOWN)


__all__ = [
    "AE_TITLE_UNKNOWN", "CALLED_AE_UNKNOWN", "CALLING_AE_UNKNOWN", "reason_in_words", "rejection_reason",
]
