"""`tracking.store.check_reachable`: an unreachable server or database fails in seconds with one line."""
import time

import pytest

from pipeline.tracking.store import TrackingUnavailable, check_reachable
from tests.integration.test_ui import free_port


@pytest.mark.parametrize("scheme", ["http://127.0.0.1:{port}", "postgresql://u:p@127.0.0.1:{port}/mlflow"])
def test_a_server_that_does_not_answer_fails_in_seconds_in_one_line(scheme):
    uri = scheme.format(port=free_port())  # nothing listens there
    start = time.monotonic()
    with pytest.raises(TrackingUnavailable) as raised:
        check_reachable(uri, timeout=2)
    assert time.monotonic() - start < 10
    message = str(raised.value)
    assert message.startswith(f"tracking.uri={uri}: ") and "\n" not in message
    assert "refused" in message.lower() and message.endswith("start it (`make server`) or choose another tracking.uri")


def test_a_local_sqlite_store_is_always_reachable(tmp_path):
    check_reachable(f"sqlite:///{tmp_path}/new/mlflow.db")  # MLflow creates the file and its directory
