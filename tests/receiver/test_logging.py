"""What an operator reads: one line per association and per study at INFO, instances at DEBUG."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers.dicom import StudyUIDs, mr_instance
from tests.helpers.node import running_node
from tests.helpers.senders import store
from tests.queue.helpers import wait_until


def test_an_association_is_logged_once_with_its_counts_and_studies(database_url: str, tmp_path: Path) -> None:
    first, second = StudyUIDs.new(), StudyUIDs.new()
    instances = [mr_instance(first.study, first.series[0], n) for n in range(1, 4)]
    other = mr_instance(second.study, second.series[0], 1)
    refused = mr_instance(first.study, first.series[0], 9)
    refused.Modality = "CT"
    with running_node(tmp_path, database_url) as node:
        statuses = [s.Status for s in store(node, [*instances, other, instances[0], refused])]
        assert statuses == [0, 0, 0, 0, 0, 0xA900]
        wait_until(lambda: "association 1 released" in node.log_text(), "the association's log line")
        log = node.log_text()

    info = [line for line in log.splitlines() if " INFO " in line]
    about_association = [line.split(": ", 1)[1] for line in info
                         if re.search(r"association 1 (released|stored)", line)]
    assert about_association == [
        "association 1 released: 4 instances stored, 1 duplicate, 1 refused",
        *(f"association 1 stored {n} of study {uid}"
          for uid, n in sorted([(first.study, "3 instances"), (second.study, "1 instance")])),
    ]
    assert not [line for line in info if "stored SOP Instance" in line]
