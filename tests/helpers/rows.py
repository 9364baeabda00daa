"""The rows a node under test left in its database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from node.db.models import Association, Instance, Series, Study


@dataclass(frozen=True)
class Rows:
    associations: list[Association]
    studies: list[Study]
    series: list[Series]
    instances: list[Instance]


def read_rows(engine: Engine) -> Rows:
    with Session(engine) as session:
        return Rows(
            associations=list(session.scalars(select(Association).order_by(Association.id))),
            studies=list(session.scalars(select(Study).order_by(Study.id))),
            series=list(session.scalars(select(Series).order_by(Series.id))),
            instances=list(session.scalars(select(Instance).order_by(Instance.id))),
        )
