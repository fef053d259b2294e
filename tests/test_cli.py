"""The command line without servers: parsing, help, one-line errors, and the pure parts
of the operations commands (event lines, inspect output, monitor table, log file names,
live graphs from an in-memory backend)."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowq import Flowq, states
from flowq.cli import inspect as inspect_cli
from flowq.cli import exit_code_of, main
from flowq.cli.events import snapshot
from flowq.exceptions import BackendUnavailable, BrokerUnavailable, ConfigurationError
from flowq.exceptions import TimeoutError as FlowqTimeoutError
from flowq.runtime import events, live, logfile

ROOT = Path(__file__).resolve().parents[1]

#: An app whose broker cannot be reached: a command that touches it fails, loudly.
app = Flowq("cli", broker="redis://:secret@127.0.0.1:1/0", backend="memory://cli-tests",
            task_default_queue="cli-q", broker_connection_max_retries=1)


@app.task
def add(x: int, y: int) -> int:
    return x + y


APP = "tests.test_cli:app"

COMMANDS = [["worker"], ["beat"], ["call"], ["result"], ["graph"], ["purge"], ["inspect"],
            ["status"], ["events"], ["monitor"], ["control"], ["control", "revoke"],
            ["control", "terminate"], ["control", "rate_limit"], ["control", "time_limit"],
            ["control", "add_consumer"], ["control", "cancel_consumer"],
            ["control", "pool_grow"], ["control", "pool_shrink"], ["control", "shutdown"],
            ["control", "autoscale"], ["control", "enable_events"],
            ["control", "disable_events"], ["control", "heartbeat"], ["report"], ["shell"]]


def run(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(main, list(args), input=input)


def flowq_process(*args: str, env: dict[str, str] | None = None
                  ) -> subprocess.CompletedProcess[str]:
    """``python -m flowq ARGS`` in a subprocess, from the repository's root."""
    return subprocess.run([sys.executable, "-m", "flowq", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def one_line_error(result: Any) -> str:
    """The single ``Error: ...`` line a failed command printed (and nothing else)."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    return errors[0]


# -- help ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert "flowq " in result.output


def test_worker_help_lists_the_operations_options() -> None:
    output = run("worker", "--help").output
    for option in ("-E, --events", "--purge", "-f, --logfile", "-n, --hostname"):
        assert option in output


# -- usage errors ----------------------------------------------------------------------------


def test_unknown_command_is_a_usage_error_of_one_line() -> None:
    result = run("-A", APP, "frobnicate")
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Error: no such command 'frobnicate'; run 'flowq --help' for the list"]
    result = run("-A", APP, "control", "frobnicate")
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "Error: no such command 'frobnicate'; run 'flowq control --help' for the list"]


def test_wrong_app_is_one_line() -> None:
    result = run("-A", "tests.no_such_module:app", "status")
    assert result.exit_code == 2
    assert one_line_error(result) == ("Error: cannot import 'tests.no_such_module': No module "
                                      "named 'tests.no_such_module'")
    result = run("-A", "tests.test_cli:nope", "status")
    assert result.exit_code == 2
    assert one_line_error(result) == "Error: 'tests.test_cli' has no attribute 'nope'"
    result = run("-A", "tests.test_cli:COMMANDS", "status")
    assert result.exit_code == 2 and "is not a flowq app" in one_line_error(result)


@pytest.mark.parametrize("source, error", [
    ("raise RuntimeError('no config')", "RuntimeError: no config"),
    ("undefined_name", "NameError: name 'undefined_name' is not defined"),
    ("def broken(:\n    pass", "SyntaxError: "),
    ("import no_such_dependency_xyz",
     "ModuleNotFoundError: No module named 'no_such_dependency_xyz'"),
], ids=["RuntimeError", "NameError", "SyntaxError", "missing-dependency"])
def test_an_app_module_failing_on_import_is_one_line(tmp_path: Path, source: str,
                                                     error: str) -> None:
    (tmp_path / "broken_app.py").write_text(source + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    done = flowq_process("-A", "broken_app:app", "status", env=env)
    assert done.returncode == 1, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"Error: importing 'broken_app' failed: {error}"), line
    assert line.endswith("; run 'flowq --traceback ...' to see where"), line
    traced = flowq_process("--traceback", "-A", "broken_app:app", "status", env=env)
    assert traced.returncode == 1 and "Traceback" in traced.stderr
    assert traced.stderr.splitlines()[-1].startswith(error.split(":")[0])


def test_the_app_may_follow_the_command_name() -> None:
    # As Celery users type it: flowq worker -A tasks:app, flowq control -A ... revoke ...
    assert (run("result", "never-sent", "-A", APP).output) == "PENDING None\n"
    for args in (["inspect", "ping", "-A", APP], ["control", "-A", APP, "pool_grow"],
                 ["control", "pool_grow", "--app", APP]):
        result = run(*args)
        assert result.exit_code == 69, (args, result.output)  # this app's broker is down
        assert "redis://:**@127.0.0.1:1/0" in one_line_error(result)
    # After the name wins over before it.
    assert run("-A", "tests.no_such_module:app", "result", "x", "-A", APP).exit_code == 0


APP_FILE = """
from flowq import Flowq

app = Flowq("files", broker="memory://", backend="memory://cli-files")


@app.task
def add(x, y):
    return x + y


workflow = add.s(1, 2) | add.s(3)
"""


def test_the_app_may_be_given_as_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = f"proj_{os.getpid()}_{time.monotonic_ns()}"  # a fresh module name per run
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "jobs.py").write_text(APP_FILE)
    (tmp_path / f"{package}_top.py").write_text(APP_FILE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    # A file inside a package is imported under its dotted name, as -A proj.jobs would be.
    drawn = run("graph", f"{package}/jobs.py:workflow")
    assert drawn.exit_code == 0, drawn.output
    assert f"{package}.jobs.add(1, 2)" in drawn.output
    assert run("-A", f"{package}/jobs.py", "result", "x").output == "PENDING None\n"
    assert run("result", "x", "-A", f"{package}_top.py:app").output == "PENDING None\n"

    missing = run("-A", "tasks.py", "result", "x")
    assert missing.exit_code == 2
    assert one_line_error(missing) == (
        f"Error: -A 'tasks.py' names a file, but there is no tasks.py in {tmp_path}; give "
        f"the file's path or its module, e.g. -A tasks")
    slashes = run("-A", f"{package}/jobs", "result", "x")
    assert slashes.exit_code == 2
    assert one_line_error(slashes) == (
        f"Error: -A '{package}/jobs' is neither a module nor a .py file; give the module "
        f"with dots, e.g. -A {package}.jobs")


@pytest.mark.parametrize("command", [["worker"], ["beat"]])
def test_a_bad_log_level_is_refused_with_the_valid_ones(command: list[str]) -> None:
    result = run("-A", APP, *command, "-l", "bogus")
    assert result.exit_code == 2
    assert ("'bogus' is not one of 'debug', 'info', 'warning', 'error', 'critical', "
            "'fatal'") in result.output


def test_missing_app_says_how_to_give_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWQ_APP", raising=False)
    result = run("status")
    assert result.exit_code == 2
    assert one_line_error(result).startswith("Error: no app given: use flowq -A module[:attr]")


@pytest.mark.parametrize("args, message", [
    (["inspect", "everything"], "Invalid value for 'METHOD'"),
    (["control", "revoke"], "Missing argument 'TASK_IDS...'"),
    (["control", "time_limit", "tests.test_cli.add", "soon"], "'soon' is not a valid float"),
    (["control", "pool_grow", "0"], "0 is not in the range x>=1"),
    (["events", "--count", "0"], "0 is not in the range x>=1"),
    (["monitor", "--interval", "0.01"], "0.01 is not in the range x>=0.2"),
    (["inspect", "ping", "-t", "0"], "0.0 is not in the range x>0"),
])
def test_bad_arguments_are_usage_errors(args: list[str], message: str) -> None:
    result = run("-A", APP, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_bad_values_are_refused_before_contacting_the_broker() -> None:
    # The app's broker is unreachable: reaching it would exit 69 after retries.
    result = run("-A", APP, "control", "rate_limit", "tests.test_cli.add", "10/fortnight")
    assert result.exit_code == 2
    assert one_line_error(result) == ("Error: rate limit '10/fortnight' is not like '10/s', "
                                      "'100/m' or '1000/h'")
    result = run("-A", APP, "control", "terminate", "some-id", "--signal", "SIGNOPE")
    assert result.exit_code == 2
    assert one_line_error(result) == "Error: unknown signal 'SIGNOPE'"


def test_purge_asks_and_a_no_touches_nothing() -> None:
    result = run("-A", APP, "purge", "-Q", "a,b", input="n\n")
    assert result.exit_code == 1
    assert "Delete all waiting messages in a, b? [y/N]" in result.output
    assert "Aborted!" in result.output


def test_unreachable_broker_is_one_line_with_the_password_masked() -> None:
    result = run("-A", APP, "purge", "-f")
    assert result.exit_code == 69
    line = one_line_error(result)
    assert line.startswith("Error: BrokerUnavailable: could not connect to the broker at "
                           "redis://:**@127.0.0.1:1/0: ")
    assert "secret" not in result.output


@pytest.mark.parametrize("args, error", [
    (["tests.test_cli.ad"], "Error: task 'tests.test_cli.ad' is not registered (did you mean "
                            "'tests.test_cli.add'?); to send it anyway (a task only the workers "
                            "import), add --no-check"),
    (["tests.test_cli.add", "--args", "[1]"], "Error: tests.test_cli.add(x: int, y: int) -> int "
                                              "cannot be called with 1 argument: missing a "
                                              "required argument: 'y'"),
    (["tests.test_cli.add", "--args", "[1, 2]", "--serializer", "pickle"],
     "Error: --serializer pickle: this app's workers accept only json (accept_content); add "
     "'pickle' to accept_content, or leave --serializer out"),
], ids=["typo", "arity", "refused-serializer"])
def test_call_refuses_what_the_app_cannot_run_before_sending(args: list[str], error: str) -> None:
    # The app's broker is unreachable: sending would exit 69 after retries.
    result = run("-A", APP, "call", *args)
    assert result.exit_code == 2, result.output
    assert one_line_error(result).startswith(error)


@pytest.mark.parametrize("args, message", [
    (["--eta", "tomorrow"], "Invalid value for '--eta': 'tomorrow' is not an ISO 8601 time"),
    (["--expires", "soon"], "Invalid value for '--expires': 'soon' is not an ISO 8601 time"),
    (["--serializer", "xml"], "'xml' is not one of 'json', 'msgpack', 'pickle', 'yaml'"),
])
def test_call_option_values_are_usage_errors(args: list[str], message: str) -> None:
    result = run("-A", APP, "call", "tests.test_cli.add", *args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_call_sends_eta_expires_and_serializer(memory_app: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from flowq.runtime.publisher import decode_delayed

    instance, *_ = memory_app
    instance.conf.accept_content = ["json", "msgpack"]
    monkeypatch.setattr("tests.test_cli.app", instance)
    tomorrow = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1)
    eta, expires = tomorrow.isoformat(), (tomorrow + timedelta(hours=1)).replace(tzinfo=None)
    sent = run("-A", APP, "call", "mem.add", "--args", "[1, 2]", "--eta", eta,
               "--expires", expires.isoformat(), "--serializer", "msgpack")
    assert sent.exit_code == 0, sent.output
    [(due, payload)] = instance.backend.delay_peek(1)  # a future eta waits in the backend
    message = decode_delayed(payload)
    assert message.id == sent.output.strip()
    assert due == datetime.fromisoformat(eta).timestamp()
    assert message.headers["eta"] == eta
    assert message.headers["expires"] == f"{expires.isoformat()}+00:00"  # no zone: UTC
    assert message.content_type == "application/x-msgpack"
    unknown = run("-A", APP, "call", "mem.only_on_workers", "--no-check")
    assert unknown.exit_code == 0, unknown.output


def test_beat_refuses_at_start_an_entry_naming_an_unknown_task(
        memory_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    instance, *_ = memory_app
    instance.conf.beat_schedule = {"adding": {"task": "mem.ad", "schedule": 30}}
    monkeypatch.setattr("tests.test_cli.app", instance)
    result = run("-A", APP, "beat")
    assert result.exit_code == 1
    assert one_line_error(result) == (
        "Error: ConfigurationError: beat_schedule entry 'adding': invalid workflow: task "
        "(mem.ad): task 'mem.ad' is not registered (did you mean 'mem.add'?)")


def test_result_traceback_prints_the_failure_s_traceback(memory_app: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    instance, add, *_ = memory_app
    monkeypatch.setattr("tests.test_cli.app", instance)
    try:
        raise ValueError("no such account")
    except ValueError as exc:
        instance.backend.store("failed-id", states.FAILURE,
                               instance.result_codec.failure(exc, "Traceback (most recent "
                                                             "call last):\n  in charge\n"
                                                             "ValueError: no such account\n"))
    done = run("-A", APP, "result", "failed-id", "--traceback")
    assert done.exit_code == 1
    assert done.output.splitlines() == ["FAILURE ValueError: no such account",
                                        "Traceback (most recent call last):", "  in charge",
                                        "ValueError: no such account"]
    assert run("-A", APP, "result", "failed-id").output.splitlines() == [
        "FAILURE ValueError: no such account"]


def test_a_result_not_ready_in_time_exits_1_not_69() -> None:
    # flowq's TimeoutError is also the builtin one, an OSError; no server was unreachable.
    result = run("-A", APP, "result", "never-sent", "--wait", "--timeout", "0.2")
    assert result.exit_code == 1
    assert one_line_error(result).startswith(
        "Error: TimeoutError: 1 of 1 results still pending after waiting 0.2s")
    result = run("-A", APP, "result", "never-sent")
    assert (result.exit_code, result.output) == (0, "PENDING None\n")


@pytest.mark.parametrize("error, code", [
    (FlowqTimeoutError("not ready"), 1),
    (ConfigurationError("bad setting"), 1),
    (BrokerUnavailable("down"), 69),
    (BackendUnavailable("down"), 69),
    (ConnectionRefusedError(111, "Connection refused"), 69),
    (RedisConnectionError("refused"), 69),
    (RedisTimeoutError("no answer"), 69),
    (ResponseError("WRONGTYPE"), 1),
], ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value))
def test_exit_codes_tell_unreachable_services_from_other_errors(error: Exception,
                                                                 code: int) -> None:
    assert exit_code_of(error) == code


def test_graph_by_root_id_needs_the_app() -> None:
    result = run("graph", "5f0c2d9e")
    assert result.exit_code == 2
    assert one_line_error(result) == (
        "Error: '5f0c2d9e' is not module:expr; to draw a sent workflow by its root id, give "
        "the app: flowq -A tasks:app graph 5f0c2d9e")


@pytest.mark.parametrize("fmt, first", [
    ("text", "workflow (12 nodes, output: #11)"),
    ("dot", "digraph workflow {"),
    ("mermaid", "flowchart LR"),
])
def test_graph_draws_a_workflow_from_code(fmt: str, first: str) -> None:
    done = flowq_process("graph", "examples.workflows.quickstart:workflow_chord",
                         "--format", fmt)
    assert done.returncode == 0, done.stderr
    drawn = done.stdout
    assert drawn.splitlines()[0] == first
    assert all(f"examples.workflows.quickstart.add({i}, {i})" in drawn for i in range(10))
    assert "join[10]" in drawn and "examples.workflows.quickstart.tsum(...)" in drawn


def test_graph_of_a_task_asks_for_a_signature() -> None:
    result = run("graph", "tests.test_cli:add")
    assert result.exit_code == 2
    assert one_line_error(result) == (
        "Error: 'tests.test_cli:add' is a task, not a workflow: pass a signature instead, "
        "e.g. module:name where name = add.s(...) is built at module level")


# -- worker options: parsing and the pure parts --------------------------------------------


@pytest.mark.parametrize("value, bounds", [("10,3", (10, 3)), ("3,10", (10, 3)), ("4", (4, 1))])
def test_autoscale_takes_max_and_min_as_celery_does(value: str, bounds: tuple[int, int]) -> None:
    from flowq.cli.worker import parse_autoscale

    assert parse_autoscale(None, None, value) == bounds  # type: ignore[arg-type]


@pytest.mark.parametrize("args, message", [
    (["--autoscale", "10,0"], "MIN is 0: a flowq pool always keeps at least one process"),
    (["--autoscale", "ten"], "'ten' is not MAX,MIN (two whole numbers, e.g. 10,3) or MAX"),
    (["--autoscale", "1,2,3"], "'1,2,3' is not MAX,MIN"),
    (["--max-memory-per-child", "0"], "0 is not in the range x>=1"),
    (["--time-limit", "0"], "0.0 is not in the range x>0"),
    (["--time-limit", "5", "--soft-time-limit", "10"],
     "Error: --soft-time-limit 10 is greater than --time-limit 5: the soft limit could never "
     "fire"),
])
def test_worker_option_values_are_usage_errors(args: list[str], message: str) -> None:
    result = run("-A", APP, "worker", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_the_autoscaler_grows_at_once_and_shrinks_after_the_keepalive() -> None:
    from flowq.runtime.autoscale import Autoscaler

    scaler = Autoscaler(max=4, min=1, keepalive=30.0)
    assert scaler.target(load=3, size=1, now=100.0) == 3  # grows to the load
    assert scaler.target(load=9, size=3, now=101.0) == 4  # never beyond MAX
    assert scaler.target(load=0, size=4, now=120.0) == 4  # grew 19 s ago: keeps its size
    assert scaler.target(load=2, size=4, now=131.0) == 2  # 30 s later: down to the load
    assert scaler.target(load=0, size=2, now=132.0) == 1  # never below MIN
    assert scaler.clamp(7) == 4 and scaler.clamp(0) == 1
    with pytest.raises(ConfigurationError, match=r"autoscale MAX \(2\) is less than MIN \(3\)"):
        scaler.update(2, 3)


def test_a_pidfile_refuses_a_running_pid_and_replaces_a_stale_one(tmp_path: Path,
                                                                  caplog: Any) -> None:
    from flowq.runtime.pidfile import Pidfile

    path = tmp_path / "run" / "w1.pid"
    path.parent.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path.write_text(f"{child.pid}\n")
        with pytest.raises(ConfigurationError, match=f"holds pid {child.pid}, which is running"):
            Pidfile(str(path)).acquire()
        assert path.read_text() == f"{child.pid}\n"
    finally:
        child.kill()
        child.wait()
    held = Pidfile(str(path))
    held.acquire()  # the pid in it is gone: replaced
    assert path.read_text() == f"{os.getpid()}\n"
    assert f"Replacing the stale pidfile {path} (pid {child.pid} is not running)" in caplog.text
    held.release()
    assert not path.exists()


def test_connection_retries_pause_briefly_then_every_two_seconds() -> None:
    import itertools

    from flowq.runtime import broker

    delays = list(itertools.islice(broker.retry_delays(), 7))
    assert delays == pytest.approx([0.1, 0.6, 1.1, 1.6, 2.0, 2.0, 2.0])
    # With the default broker_connection_max_retries (5), a worker without its broker
    # gives up after these pauses: seconds, not a quarter of a minute.
    assert sum(delays[:5]) == pytest.approx(5.4)


# -- report and shell ------------------------------------------------------------------------


def test_report_shows_versions_and_the_given_settings_with_secrets_masked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import kombu

    secret = Flowq("secret-report", broker="amqp://app:hunter2@mq.internal:5672//",
                   backend="redis://:hunter2@redis.internal:6379/0",
                   security_key="hunter2",
                   broker_transport_options={"sentinel_kwargs": {"password": "hunter2"},
                                             "visibility_timeout": 60},
                   beat_schedule={"sync": {"task": "t.sync", "schedule": 60,
                                           "kwargs": {"api_key": "hunter2", "n": 1}}})
    monkeypatch.setattr("tests.test_cli.app", secret)
    result = run("-A", APP, "report")
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("flowq ") and " on Python 3." in lines[0]
    assert f"kombu {kombu.__version__}" in lines[1]
    assert lines[2:7] == [
        f"app: {APP} (0 task(s))",
        "broker: amqp://app:**@mq.internal:5672//",
        "result backend: redis://:**@redis.internal:6379/0",
        f"data_dir: {secret.conf.data_dir}",
        "settings given (the rest are defaults):"]
    assert lines[7:] == [
        "  beat_schedule = {'sync': {'task': 't.sync', 'schedule': 60, 'kwargs': "
        "{'api_key': '**', 'n': 1}}}",
        "  broker_transport_options = {'sentinel_kwargs': {'password': '**'}, "
        "'visibility_timeout': 60}",
        "  broker_url = 'amqp://app:**@mq.internal:5672//'",
        "  result_backend = 'redis://:**@redis.internal:6379/0'",
        "  security_key = '**'"]


def test_shell_runs_piped_code_with_the_app_and_its_tasks() -> None:
    code = "print(add.name, app.main, add is tasks['tests.test_cli.add'])\nprint(chain, states.SUCCESS)\n"
    result = CliRunner().invoke(main, ["-A", APP, "shell", "--python"], input=code)
    assert result.exit_code == 0, result.output
    assert "tests.test_cli.add cli True" in result.stdout
    assert "<function chain at " in result.stdout and "SUCCESS" in result.stdout
    assert "flowq shell: app tests.test_cli:app on redis://:**@127.0.0.1:1/0" in result.output
    assert "  tasks: add" in result.output


def test_shell_prefers_ipython_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    started: list[dict[str, Any]] = []
    fake = types.ModuleType("IPython")
    fake.start_ipython = lambda argv, user_ns: started.append(user_ns)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert run("-A", APP, "shell").exit_code == 0
    [names] = started
    assert names["add"] is app.tasks["tests.test_cli.add"] and names["app"] is app
    monkeypatch.setitem(sys.modules, "IPython", None)  # as if not installed
    refused = run("-A", APP, "shell", "--ipython")
    assert refused.exit_code == 2
    assert one_line_error(refused) == ("Error: --ipython: IPython is not installed (pip "
                                       "install ipython), or use --python")


# -- the operations guide's command lines ----------------------------------------------------


def parse_command_line(argv: list[str]) -> click.Context:
    """``flowq ARGS`` parsed as the CLI would, down to the innermost command, without
    running it: an unknown command or option, or a bad value, raises click's UsageError."""
    assert argv[0] == "flowq", argv
    command: click.Command = main
    ctx = main.make_context("flowq", argv[1:])
    while isinstance(command, click.Group) and (ctx._protected_args or ctx.args):
        given = [*ctx._protected_args, *ctx.args]  # the command's name, then its arguments
        name, found, rest = command.resolve_command(ctx, given)
        assert found is not None and name is not None, given
        command, ctx = found, found.make_context(name, rest, parent=ctx)
    return ctx


def test_every_command_line_of_the_operations_guide_is_one_flowq_accepts() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    consoles = re.findall(r"```console\n(.*?)```", text, flags=re.S)
    lines = [line[2:] for block in consoles for line in block.splitlines()
             if line.startswith("$ flowq ") or line.startswith("$ echo ")]
    assert len(lines) >= 15
    for line in lines:
        words = shlex.split(line.split(" | ")[-1] if line.startswith("echo ") else
                            line.split(" | ")[0], comments=True)
        ctx = parse_command_line(words)
        assert ctx.command.name != "flowq", line  # it named a command
    with pytest.raises(click.UsageError):
        parse_command_line(["flowq", "-A", "tasks:app", "inspect", "everything"])
    with pytest.raises(click.UsageError):
        parse_command_line(["flowq", "-A", "tasks:app", "control", "revoke", "x", "--hard"])


# -- graph of a sent workflow, from the in-memory backend --------------------------------------


@pytest.fixture
def memory_app() -> Any:
    """An app on the in-memory broker and backend (this process only)."""
    instance = Flowq("mem", broker="memory://", backend="memory://cli-graph",
                     task_default_queue="mem-q")

    @instance.task(name="mem.add")
    def add(x: int, y: int) -> int:
        return x + y

    @instance.task(name="mem.spread")
    def spread(n: int) -> list[int]:
        return list(range(n))

    @instance.task(name="mem.square")
    def square(x: int) -> int:
        return x * x

    yield instance, add, spread, square
    instance.close()


def test_a_sent_workflow_is_found_by_its_root_id_and_drawn_with_states(memory_app: Any
                                                                        ) -> None:
    from flowq import fanout

    instance, add, spread, square = memory_app
    # Given a sent chain whose first step succeeded and whose second runs
    result = (spread.s(3) | fanout(square.s()) | add.s(1)).delay()
    workflow = live.find(instance, result.parent.parent.id)
    assert workflow is not None and len(workflow.nodes) == 3
    root = workflow.node_id(0)
    codec = instance.result_codec
    instance.backend.store(root, states.SUCCESS, codec.success([0, 1, 2]))
    fanout_id = workflow.node_id(1)
    instance.backend.chord_init([(fanout_id, 3)])
    # When it is drawn, with one item reported running by a worker
    from flowq.canvas import ids

    running = {ids.fanout_item_id(fanout_id, 0): states.STARTED}
    graph = live.live_graph(instance, workflow, running)
    # Then every node has its state, the fanout its width
    assert [graph.nodes[n]["state"] for n in range(3)] == [states.SUCCESS, states.STARTED,
                                                           states.PENDING]
    assert graph.nodes[0]["result"] == "[0, 1, 2]"
    assert graph.nodes[1]["width"] == 3 and graph.nodes[1]["result"] == "0/3 done"
    assert live.unfinished(workflow, graph)


def test_graph_command_draws_the_live_states(memory_app: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    instance, add, _, _ = memory_app
    result = (add.s(1, 2) | add.s(3)).delay()
    root = result.parent.id
    codec = instance.result_codec
    instance.backend.store(root, states.SUCCESS, codec.success(3))
    instance.backend.store(result.id, states.FAILURE, codec.failure(ValueError("boom")))
    monkeypatch.setattr("tests.test_cli.app", instance)
    output = run("-A", APP, "graph", root, "-t", "0")
    assert output.exit_code == 0, output.output
    lines = output.output.splitlines()
    assert lines[0] == f"workflow {root[:8]} (2 nodes, output: #1)"
    assert lines[1] == f"#0 mem.add(1, 2)   [SUCCESS] id={root[:8]} -> 3"
    assert lines[2] == (f"#1 mem.add(..., 3)  <- #0   [FAILURE] id={result.id[:8]} "
                        f"-> ValueError: boom [output]")


def test_a_lone_task_stores_no_pointer(memory_app: Any) -> None:
    instance, add, _, _ = memory_app
    single = add.delay(1, 1)
    assert live.find(instance, single.id) is None


# -- event lines -----------------------------------------------------------------------------

STAMP = 1_700_000_000.25


@pytest.mark.parametrize("event, line", [
    ({"type": "task-received", "uuid": "id-1", "name": "t.add", "queue": "q"},
     "w1@h task-received t.add[id-1] queue=q"),
    ({"type": "task-started", "uuid": "id-1", "name": "t.add"}, "w1@h task-started t.add[id-1]"),
    ({"type": "task-succeeded", "uuid": "id-1", "name": "t.add", "runtime": 0.01234,
      "result": "4"}, "w1@h task-succeeded t.add[id-1] in 0.0123s -> 4"),
    ({"type": "task-failed", "uuid": "id-1", "name": "t.add", "runtime": 0.5,
      "exception": "ValueError: no"}, "w1@h task-failed t.add[id-1] in 0.5000s: ValueError: no"),
    ({"type": "task-revoked", "uuid": "id-1", "name": "t.add", "reason": "expired",
      "terminated": False}, "w1@h task-revoked t.add[id-1] expired (not run)"),
    ({"type": "worker-heartbeat", "active": 1, "processed": 7, "queues": ["a", "b"]},
     "w1@h worker-heartbeat active=1 processed=7 queues=a,b"),
])
def test_event_lines(event: dict[str, Any], line: str) -> None:
    formatted = events.format_event({"hostname": "w1@h", "timestamp": STAMP, **event})
    clock, rest = formatted.split(" ", 1)
    assert clock.endswith(".250") and len(clock) == len("00:00:00.250")
    assert rest == line


def test_a_full_event_buffer_drops_and_counts() -> None:
    dispatcher = events.EventDispatcher(app, "w1@h", buffer=2)
    for _ in range(5):
        dispatcher.send("task-started", uuid="x")
    assert dispatcher.dropped == 3


def test_an_unreachable_broker_drops_events_without_raising(caplog: Any) -> None:
    dispatcher = events.EventDispatcher(app, "w1@h")  # app's broker refuses connections
    dispatcher.start()
    for _ in range(3):
        dispatcher.send("task-started", uuid="x")
    deadline = time.monotonic() + 10
    while dispatcher.dropped < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    dispatcher.stop()
    assert (dispatcher.sent, dispatcher.dropped) == (0, 3)
    warnings = [r.getMessage() for r in caplog.records if r.name == "flowq.events"]
    assert warnings[0].startswith("Could not send events to redis://:**@127.0.0.1:1/0")
    assert warnings[-1] == "3 event(s) were dropped (broker unreachable or too slow)"


def test_disabled_task_events_do_nothing() -> None:
    events.DISABLED.task_started(None)  # type: ignore[arg-type]  # never looks at the job
    events.DISABLED.task_rejected(None, "q", ValueError())


# -- inspect output ----------------------------------------------------------------------------


def test_inspect_output_is_one_block_per_node(capsys: pytest.CaptureFixture[str]) -> None:
    replies = {
        "w2@h": [{"id": "t-1", "name": "t.add", "root_id": "r-1", "queue": "q"}],
        "w1@h": {"ok": "pool size is now 3"},
        "w3@h": {"error": "unknown task 't.nope'"},
        "w4@h": {"pool": {"concurrency": 2}, "queues": ["a", "b"]},
    }
    inspect_cli._show(replies, False, inspect_cli._describe)
    assert capsys.readouterr().out.splitlines() == [
        "w1@h: OK pool size is now 3",
        "w2@h: 1 task(s)",
        "  t.add[t-1] root=r-1 queue=q",
        "w3@h: ERROR unknown task 't.nope'",
        "w4@h:",
        "  pool.concurrency: 2",
        "  queues: a, b",
    ]
    inspect_cli._show(replies, True, inspect_cli._describe)
    assert json.loads(capsys.readouterr().out) == replies


# -- monitor table -----------------------------------------------------------------------------


class _StubControl:
    def __init__(self, stats: dict[str, Any], sizes: dict[str, int]):
        self._stats, self._sizes = stats, sizes

    def inspect(self, timeout: float = 1.0) -> Any:
        stats = self._stats

        class Asker:
            def stats(self) -> dict[str, Any]:
                return stats

        return Asker()

    def queue_sizes(self, names: list[str]) -> dict[str, int]:
        return {name: self._sizes.get(name, 0) for name in names}


def test_monitor_snapshot_table() -> None:
    stub = Flowq("stub", broker="redis://127.0.0.1:1/0", task_default_queue="main")
    stub.__dict__["control"] = _StubControl(
        {"w1@h": {"pool": {"concurrency": 4}, "active": 2, "reserved": 1, "uptime": 3725,
                  "counts": {"succeeded": 10, "failed": 1}, "queues": ["main", "reports"]}},
        {"main": 5, "extra": 2})
    lines = snapshot(stub, 1.0, ["extra"]).splitlines()
    assert lines[0].startswith("flowq monitor ") and lines[0].endswith(
        "broker redis://127.0.0.1:1/0")
    assert lines[2:] == [
        "WORKER  POOL  ACTIVE  RESERVED  SUCCEEDED  FAILED  UPTIME",
        "w1@h    4     2       1         10         1       1h02m",
        "",
        "QUEUE    WAITING  CONSUMERS",
        "extra    2        0",
        "main     5        1",
        "reports  0        1",
    ]
    stub.__dict__["control"] = _StubControl({}, {})
    assert "(no worker answered within 1s)" in snapshot(stub, 1.0)


# -- log file names ----------------------------------------------------------------------------


def test_logfile_patterns() -> None:
    import socket

    assert logfile.expand("/var/log/%n-%i.log", "w1@box", 0) == "/var/log/w1-0.log"
    assert logfile.expand("%p|%h|%%i|%i", "w1@box", 2) == f"w1@box|{socket.gethostname()}|%i|2"
    assert logfile.expand("plain.log", "w1@box") == "plain.log"
    assert [logfile.expand("%n%I.log", "w1@box", i) for i in (0, 2)] == ["w1.log", "w1-2.log"]
    assert logfile.process_index() == 0  # not a pool process


def test_logfile_handler_reopens_per_process(tmp_path: Any) -> None:
    handler = logfile.ProcessFileHandler(str(tmp_path / "%n-%i.log"), "w1@box")
    handler.setFormatter(logging.Formatter("%(message)s"))
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello", (), None)
    handler.handle(record)
    pid = os.fork()
    if pid == 0:  # as in pool process #2 (billiard index 1) forked from the worker
        try:
            from billiard.process import current_process

            current_process().index = 1  # type: ignore[attr-defined]
            handler.handle(logging.LogRecord("t", logging.INFO, __file__, 1, "child", (),
                                             None))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    handler.handle(logging.LogRecord("t", logging.INFO, __file__, 1, "again", (), None))
    handler.close()
    assert (tmp_path / "w1-0.log").read_text() == "hello\nagain\n"
    assert (tmp_path / "w1-2.log").read_text() == "child\n"
