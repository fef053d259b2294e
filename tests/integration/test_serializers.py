"""Message bodies and results in every serializer a worker can be told to accept.

The module's worker accepts JSON, msgpack, YAML and pickle and stores results as
msgpack; each call picks its body's serializer with ``serializer=``. A worker that
accepts only JSON refusing the others is tested in ``tests/reliability`` (C3).
"""

from __future__ import annotations

import pytest

from tests.integration.app import add, app
from tests.integration.semantics_support import T, running

pytestmark = pytest.mark.timeout(120)

ACCEPT = ["json", "msgpack", "yaml", "pickle"]


@pytest.fixture(scope="module", params=["redis", "embedded"])
def cluster(request, tmp_path_factory):
    env = {"FLOWQ_TEST_ACCEPT": ",".join(ACCEPT), "FLOWQ_TEST_RESULT_SERIALIZER": "msgpack"}
    for instance in running(request.param, tmp_path_factory, env=env):
        app.conf.accept_content = ACCEPT
        app.conf.result_serializer = "msgpack"
        app._reset_runtime()
        try:
            yield instance
        finally:
            app.conf.accept_content = ["json"]
            app.conf.result_serializer = "json"
            app._reset_runtime()


@pytest.mark.parametrize("serializer", ["json", "msgpack", "yaml", "pickle"])
def test_a_workflow_runs_with_each_body_serializer(cluster, serializer):
    result = (add.s(2, 3) | add.s(10)).apply_async(serializer=serializer)
    assert result.get(timeout=T) == 15
    assert app.backend.get(result.id).payload[:1] == b"m"  # stored as msgpack


@pytest.mark.parametrize("serializer", ["msgpack", "pickle"])
def test_binary_serializers_carry_bytes_json_cannot(cluster, serializer):
    assert add.apply_async((b"ab", b"cd"), serializer=serializer).get(timeout=T) == b"abcd"
