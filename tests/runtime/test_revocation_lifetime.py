"""A revocation outlasts every delayed message waiting when it was made."""

from __future__ import annotations

import time

from flowq import Flowq


def test_a_revocation_outlives_result_expires_while_a_later_eta_waits():
    # Given results that expire after 0.3 s and a task delayed by a minute
    app = Flowq("revoke-life", broker="memory://", backend="memory://revoke-life",
                result_expires=0.3)

    @app.task
    def noop():
        return None

    delayed = noop.apply_async(countdown=60)
    # When it is revoked and result_expires has passed
    delayed.revoke()
    time.sleep(0.6)
    # Then the revocation is still known (the task must not run when due)
    assert delayed.id in app.backend.revoked()
