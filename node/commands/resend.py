"""`lumbar-sentinel resend`: send deliveries again (one study, one destination, or every dead letter).

Only objects the destination has not acknowledged are sent, unless
``--again`` asks for every object of the selected deliveries once more.
Without ``--study`` only dead letters are picked (of ``--destination``, or
all of them with ``--dead``); with ``--study`` every delivery of the study's
current result that is not delivered (with ``--again``, delivered ones too).
Either way only deliveries of a study's current result: a superseded SR sent
once its destination is fixed would put an outdated report beside (or after)
the one that replaced it. Dead letters of superseded results are left as they
are, and counted on standard error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from node.commands.admin import add_format, emit, write_session
from node.settings import Settings

NOT_FOUND = 1
USAGE = 2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", metavar="UID", default=None, help="the deliveries of this study")
    parser.add_argument("--destination", metavar="NAME", default=None,
                        help="only deliveries to this destination (name, or return:<AE title>)")
    parser.add_argument("--dead", action="store_true", help="every dead letter (of --destination if given)")
    parser.add_argument("--again", action="store_true",
                        help="send every object again, also those already acknowledged")
    add_format(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.study is None and args.destination is None and not args.dead:
        print("resend: give --study UID, --destination NAME or --dead", file=sys.stderr)
        return USAGE
    from node.delivery import requeue, resolve
    from node.delivery.routes import destination_names, route_named

    if args.destination is not None and route_named(settings.delivery, args.destination) is None:
        names = destination_names(settings.delivery)
        print(f"resend: no destination {args.destination!r} is configured and enabled "
              f"({'configured: ' + ', '.join(names) if names else 'the settings configure none'})",
              file=sys.stderr)
        return USAGE
    from sqlalchemy import select

    from node.db.audit import Delivery, DeliveryStatus
    from node.db.models import AnalysisResult, Study

    rows: list[dict[str, Any]] = []
    with write_session(settings) as session:
        if args.study is not None and session.scalar(
                select(Study.id).where(Study.study_instance_uid == args.study)) is None:
            print(f"resend: no study {args.study} in the database", file=sys.stderr)
            return NOT_FOUND
        query = (select(Delivery, Study.study_instance_uid, AnalysisResult.superseded_by_id)
                 .join(Study, Study.id == Delivery.study_id)
                 .join(AnalysisResult, AnalysisResult.id == Delivery.analysis_result_id)
                 .order_by(Delivery.id).with_for_update(of=Delivery))
        if args.study is not None:
            query = query.where(Study.study_instance_uid == args.study,
                                AnalysisResult.superseded_by_id.is_(None))
            if args.dead:
                query = query.where(Delivery.status == DeliveryStatus.DEAD)
            elif not args.again:
                query = query.where(Delivery.status != DeliveryStatus.DELIVERED)
        else:
            query = query.where(Delivery.status == DeliveryStatus.DEAD)
        if args.destination is not None:
            query = query.where(Delivery.destination == args.destination)
        superseded = 0
        for delivery, study_uid, superseded_by in session.execute(query).all():
            if superseded_by is not None:
                superseded += 1
                continue
            if resolve(settings.delivery, delivery.destination, delivery.return_to_ae) is None:
                # Sent again it would only fail again, as a dead letter with the same reason.
                print(f"resend: delivery {delivery.id} of study {study_uid} left as it is: its "
                      f"destination {delivery.destination!r} is no longer configured (or disabled)",
                      file=sys.stderr)
                continue
            before = delivery.status
            job_id = requeue(session, settings.delivery, delivery, again=args.again,
                             reason="lumbar-sentinel resend" + (" --again" if args.again else ""))
            rows.append({"delivery_id": delivery.id, "study_instance_uid": study_uid,
                         "destination": delivery.destination, "was": before, "job_id": job_id})
    if superseded:
        print(f"resend: {superseded} dead deliver{'y' if superseded == 1 else 'ies'} of superseded results "
              "left as they are: a newer analysis of their study replaced them",
              file=sys.stderr)
    emit({"resend": rows}, args.format, single=True)
    return 0

