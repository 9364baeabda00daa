"""The one-word delivery state that `studies` and `results` show for a result's deliveries."""

from __future__ import annotations

import pytest

from node.commands.studies import delivery_state


@pytest.mark.parametrize(("statuses", "state"), [
    ([], "none"),
    (["delivered", "delivered"], "delivered"),
    (["queued", "delivered"], "pending"),
    (["sending"], "pending"),
    (["dead", "dead"], "dead"),
    # received at one destination: not "dead", which reads as nobody got the result
    (["delivered", "dead"], "partly dead"),
    (["dead", "queued"], "partly dead"),
])
def test_delivery_state(statuses: list[str], state: str) -> None:
    assert delivery_state(statuses) == state
