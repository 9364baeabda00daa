"""Audit tables: what an analysis found (as rows), what it sent, where, and when.

The findings JSON of :class:`~node.db.models.AnalysisResult` stays the
complete record; the rows here let administrators query it with plain SQL
(views in migration 0003, documented in ``docs/audit.md``). Deliveries are a
durable outbox: one row per analysis result and destination, one item per
result object, and every attempt with each object's remote DIMSE status.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from node.db.models import UID, Base, utcnow

SIGN = String(16)
DESTINATION = String(64)


class DeliveryStatus(StrEnum):
    QUEUED = "queued"  # waiting for its next attempt
    SENDING = "sending"  # an attempt is under way
    DELIVERED = "delivered"  # every object acknowledged
    DEAD = "dead"  # attempts exhausted (or destination gone): only `resend` revives it


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class StudyStage(StrEnum):
    ANALYSED = "analysed"
    DELIVERED = "delivered"
    DEAD_LETTER = "dead_letter"
    REANALYSIS_REQUESTED = "reanalysis_requested"
    ANALYSIS_FAILED = "analysis_failed"
    ANALYSIS_WITHHELD = "analysis_withheld"
    RESEND_REQUESTED = "resend_requested"
    IMAGES_DELETED = "images_deleted"


class ResultObjectRow(Base):
    """A DICOM object an analysis wrote (SR, SEG, key image)."""

    __tablename__ = "result_objects"
    __table_args__ = (UniqueConstraint("analysis_result_id", "sop_instance_uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    analysis_result_id: Mapped[int] = mapped_column(ForeignKey("analysis_results.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    sop_class_uid: Mapped[str] = mapped_column(UID)
    # Not unique: a re-run of the same job writes the same objects (deterministic UIDs).
    sop_instance_uid: Mapped[str] = mapped_column(UID, index=True)
    series_instance_uid: Mapped[str] = mapped_column(UID)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ResultSummary(Base):
    """The study-level group of one analysis."""

    __tablename__ = "result_summaries"

    analysis_result_id: Mapped[int] = mapped_column(ForeignKey("analysis_results.id"), primary_key=True)
    suspicious_for_malignancy: Mapped[str] = mapped_column(SIGN)
    multiple_lesions: Mapped[str] = mapped_column(SIGN)
    canal_compromise: Mapped[str] = mapped_column(SIGN)
    suspicious_level_count: Mapped[int] = mapped_column(Integer)
    impression: Mapped[str] = mapped_column(Text)


class LevelFinding(Base):
    """One vertebral level of one analysis: its signs and measurements."""

    __tablename__ = "level_findings"
    __table_args__ = (UniqueConstraint("analysis_result_id", "level"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    analysis_result_id: Mapped[int] = mapped_column(ForeignKey("analysis_results.id"), index=True)
    level: Mapped[str] = mapped_column(String(8))
    marrow_infiltration: Mapped[str] = mapped_column(SIGN)
    cortical_destruction: Mapped[str] = mapped_column(SIGN)
    soft_tissue_extension: Mapped[str] = mapped_column(SIGN)
    compression_fracture: Mapped[str] = mapped_column(SIGN)
    pathologic_fracture_pattern: Mapped[str] = mapped_column(SIGN)
    suspicious_for_malignancy: Mapped[str] = mapped_column(SIGN)
    genant_grade: Mapped[int | None] = mapped_column(Integer)
    height_loss_pct: Mapped[float | None] = mapped_column(Float)
    ha_mm: Mapped[float | None] = mapped_column(Float)
    hm_mm: Mapped[float | None] = mapped_column(Float)
    hp_mm: Mapped[float | None] = mapped_column(Float)
    lesion_fraction_pct: Mapped[float | None] = mapped_column(Float)
    t1_marrow_disc_ratio: Mapped[float | None] = mapped_column(Float)


class Delivery(Base):
    """The outbox row: one analysis result's objects for one destination."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("analysis_result_id", "destination"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    analysis_result_id: Mapped[int] = mapped_column(ForeignKey("analysis_results.id"), index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    destination: Mapped[str] = mapped_column(DESTINATION, index=True)
    # The route as last used (the configuration may change between attempts).
    called_ae: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    # Set for "back to the sender" deliveries: the calling AE title the study came from.
    return_to_ae: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.QUEUED, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    items: Mapped[list[DeliveryItem]] = relationship(back_populates="delivery", order_by="DeliveryItem.id")


class DeliveryItem(Base):
    """One object of a delivery; acknowledged once the destination answered success or warning."""

    __tablename__ = "delivery_items"
    __table_args__ = (UniqueConstraint("delivery_id", "result_object_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"), index=True)
    result_object_id: Mapped[int] = mapped_column(ForeignKey("result_objects.id"), index=True)
    acknowledged_at: Mapped[datetime | None]
    dimse_status: Mapped[int | None] = mapped_column(Integer)

    delivery: Mapped[Delivery] = relationship(back_populates="items")
    result_object: Mapped[ResultObjectRow] = relationship()


class DeliveryAttempt(Base):
    """One association (or failure to get one) of a delivery."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"), index=True)
    destination: Mapped[str] = mapped_column(DESTINATION)
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16))  # delivered | partial | failed
    error: Mapped[str | None] = mapped_column(Text)
    # When the next attempt was scheduled (None: delivered, or a dead letter).
    retry_at: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(128))

    objects: Mapped[list[DeliveryAttemptObject]] = relationship(order_by="DeliveryAttemptObject.id")


class DeliveryAttemptObject(Base):
    """One C-STORE of an attempt: the remote status (None: no answer) or the local error."""

    __tablename__ = "delivery_attempt_objects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("delivery_attempts.id"), index=True)
    result_object_id: Mapped[int] = mapped_column(ForeignKey("result_objects.id"))
    sop_instance_uid: Mapped[str] = mapped_column(UID)
    dimse_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class DestinationBreaker(Base):
    """A destination's circuit breaker, shared by every process on the database."""

    __tablename__ = "destination_breakers"

    destination: Mapped[str] = mapped_column(DESTINATION, primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default=BreakerState.CLOSED)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime | None]
    # Open: deliveries wait until then. Half-open: the probe's deadline.
    open_until: Mapped[datetime | None]
    probe_owner: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class StudyEvent(Base):
    """A stage a study went through that no other row dates (analysed, delivered, images deleted...)."""

    __tablename__ = "study_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    stage: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)


class RetentionDeletion(Base):
    """A retention run deleting a study's received images."""

    __tablename__ = "retention_deletions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    files_deleted: Mapped[int] = mapped_column(Integer)
    bytes_deleted: Mapped[int] = mapped_column(BigInteger)
    files_missing: Mapped[int] = mapped_column(Integer)
