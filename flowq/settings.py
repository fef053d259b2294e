"""Settings: one typed object whose defaults live in one table.

Names are Celery's lower-case setting names, so a Celery configuration module works as
is. URLs carry secrets: ``repr`` of the settings and :func:`mask_url` never show a password.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from flowq.exceptions import ConfigurationError


class Setting(NamedTuple):
    type: type | tuple[type, ...]
    default: Any
    doc: str
    choices: tuple[Any, ...] | None = None  # the only values allowed, when there is a list


_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_OPT_STR = (str, type(None))

#: name -> (type, default, one line of doc). The only place a default is written.
DEFAULTS: dict[str, Setting] = {
    "broker_url": Setting(_OPT_STR, None, "Broker URL; None means the embedded default."),
    "result_backend": Setting(_OPT_STR, None, "Result backend URL; None means the embedded default."),
    "data_dir": Setting(str, ".flowq", "Where the embedded default keeps its SQLite files; "
                                       "relative to the file that defines the app."),
    "broker_transport_options": Setting(dict, {}, "Extra options passed to the kombu transport."),
    "broker_connection_retry": Setting(bool, True, "Retry publishing on a dropped connection."),
    "broker_connection_max_retries": Setting(int, 5, "Publish retries before BrokerUnavailable."),
    "broker_publish_confirm": Setting(bool, True, "Wait for RabbitMQ publisher confirms."),
    "broker_lease_seconds": Setting(_NUM, 10.0, "Redis, embedded: how long a consumer's hold on "
                                                "a message outlives its last heartbeat."),
    "broker_queue_type": Setting(str, "classic", "RabbitMQ task queues: classic, or quorum "
                                 "(replicated; delivery limit task_max_deliveries).",
                                 ("classic", "quorum")),
    "task_serializer": Setting(str, "json", "Serializer for task message bodies."),
    "result_serializer": Setting(str, "json", "Serializer for stored results."),
    "accept_content": Setting((list, tuple, set), ("json",), "Content types a worker accepts."),
    "result_accept_content": Setting((list, tuple, set, type(None)), None,
                                     "Content types accepted for results (None: accept_content)."),
    "result_expires": Setting(_OPT_NUM, 86400, "Seconds a result (and chord state) is kept."),
    "task_always_eager": Setting(bool, False, "Run tasks in-process when sent (tests, debugging)."),
    "task_eager_propagates": Setting(bool, False, "Eager apply() re-raises task exceptions."),
    "task_default_queue": Setting(str, "flowq", "Queue used when no route applies."),
    "task_routes": Setting((dict, list, tuple, type(None)), None, "Routes: name glob -> queue."),
    "task_acks_late": Setting(bool, False, "Ack after the task finishes instead of before."),
    "task_reject_on_worker_lost": Setting(bool, False, "Requeue when the child process dies."),
    "task_time_limit": Setting(_OPT_NUM, None, "Hard time limit in seconds for every task."),
    "task_soft_time_limit": Setting(_OPT_NUM, None, "Soft time limit in seconds for every task."),
    "task_track_started": Setting(bool, False, "Record STARTED when a task begins."),
    "task_allow_error_cb_on_chord_header": Setting(
        bool, False, "A chord's link_error also runs (immutable) for each failed header task."),
    "task_max_deliveries": Setting(int, 5, "Deliveries of one message before it is dead-lettered."),
    "task_max_eta": Setting(_NUM, 365 * 86400.0, "Furthest eta (seconds ahead) a send accepts."),
    "task_default_priority": Setting((int, type(None)), None, "Priority when none is given."),
    "task_queue_max_priority": Setting((int, type(None)), 9, "x-max-priority of declared queues."),
    "workflow_inline_limit": Setting(int, 4096,
                                     "Workflows encoding larger than this travel by reference."),
    "workflow_max_nodes": Setting(int, 1_000_000, "Largest workflow a decoder accepts."),
    "workflow_index_size": Setting(int, 10_000, "Recent workflows the result backend lists "
                                                "(flowq workflows, the dashboard)."),
    "message_header_limit": Setting(int, 64 * 1024, "Largest message headers published."),
    "message_body_limit": Setting(int, 16 * 1024 * 1024, "Largest message body published."),
    "worker_concurrency": Setting((int, type(None)), None, "Pool size; None = CPU count."),
    "worker_prefetch_multiplier": Setting(int, 4, "Messages reserved per pool process."),
    "worker_pool": Setting(str, "prefork", "prefork, solo or threads."),
    "worker_max_tasks_per_child": Setting((int, type(None)), None, "Replace a child after N tasks."),
    "worker_max_memory_per_child": Setting((int, type(None)), None,
                                           "Replace a child after the task that took its "
                                           "resident memory over this many KiB."),
    "worker_autoscale_keepalive": Setting(_NUM, 30.0, "Seconds an autoscaled pool waits after "
                                                      "growing before it may shrink."),
    "worker_send_task_events": Setting(bool, False, "Emit task events."),
    "worker_metrics_port": Setting((int, type(None)), None,
                                   "Serve Prometheus metrics on this port (flowq[metrics])."),
    "worker_metrics_host": Setting(str, "127.0.0.1", "Address the metrics endpoint binds."),
    "control_exchange": Setting(str, "flowq", "Remote-control namespace; separates deployments "
                                              "sharing a broker."),
    "worker_hijack_root_logger": Setting(bool, True, "Let the worker configure logging."),
    "worker_log_format": Setting(str, "text", "Worker log lines: text, or json (one object "
                                              "per line, with the task's name, id, root id)."),
    "timezone": Setting(str, "UTC", "Time zone for crontab schedules."),
    "beat_schedule": Setting(dict, {}, "Periodic tasks: name -> entry."),
    "beat_max_loop_interval": Setting(_NUM, 5.0, "Longest sleep of the beat loop in seconds."),
    "beat_lease_ttl": Setting(_NUM, 10.0, "Seconds a standby beat waits for a dead one's lease."),
    "security_key": Setting(_OPT_STR, None, "Secret for message signing; None disables it."),
    "security_key_id": Setting(str, "default", "Id of the signing key sent with messages."),
    "security_message_ttl": Setting(_OPT_NUM, 86400, "Seconds a signed message stays valid."),
    "security_keys": Setting(dict, {}, "Older signing keys still accepted, by key id."),
}

ENVIRONMENT = {"broker_url": "FLOWQ_BROKER_URL", "result_backend": "FLOWQ_RESULT_BACKEND",
               "data_dir": "FLOWQ_DATA_DIR"}

#: Celery's upper-case or old names users may still have in config modules.
ALIASES = {
    "BROKER_URL": "broker_url",
    "CELERY_RESULT_BACKEND": "result_backend",
    "CELERY_TASK_SERIALIZER": "task_serializer",
    "CELERY_RESULT_SERIALIZER": "result_serializer",
    "CELERY_ACCEPT_CONTENT": "accept_content",
    "CELERY_ALWAYS_EAGER": "task_always_eager",
    "CELERYD_CONCURRENCY": "worker_concurrency",
    "CELERYD_PREFETCH_MULTIPLIER": "worker_prefetch_multiplier",
    "CELERYBEAT_SCHEDULE": "beat_schedule",
    "backend": "result_backend",
    "broker": "broker_url",
}


def mask_url(url: str | None) -> str | None:
    """Return ``url`` with its password replaced by ``**``, safe to print or log."""
    if not url:
        return url
    parts = urlsplit(url)
    # The netloc is split by hand: a cluster URL lists several host:port pairs, which
    # urllib cannot read as one host and port.
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:**@{hosts}"))


#: Names whose values are secrets wherever they appear (a setting, a transport option, a
#: key of a dict inside one): masked in ``as_dict``, ``inspect conf`` and ``flowq report``.
SECRET_NAME = re.compile(r"pass|secret|token|credential|signature|api_?key|(^|_)keys?$",
                         re.IGNORECASE)


def mask_secrets(value: Any, name: str = "") -> Any:
    """``value`` safe to show: under a secret-looking ``name`` it becomes ``'**'`` (a dict
    keeps its keys), every URL's password ``**``; dicts, lists and tuples are walked."""
    if name and SECRET_NAME.search(name) and value not in (None, "", {}, [], ()):
        return {key: "**" for key in value} if isinstance(value, Mapping) else "**"
    if isinstance(value, str):
        return mask_url(value) if "://" in value else value
    if isinstance(value, Mapping):
        return {key: mask_secrets(item, str(key)) for key, item in value.items()}
    if isinstance(value, list | tuple):
        masked = [mask_secrets(item) for item in value]
        return masked if isinstance(value, list) else tuple(masked)
    return value


class Settings:
    """The configuration of one app; attribute access, Celery names, typed values.

    Reading ``conf.broker_url`` gives the value set by the user, else the environment
    variable, else the default from :data:`DEFAULTS`. ``conf.data_dir`` is always an
    absolute path: a relative one is taken from ``base_dir`` (the directory of the file
    that defines the app), so processes started in different directories share one
    embedded broker instead of each making its own.
    """

    __slots__ = ("_values", "base_dir")

    def __init__(self, **values: Any):
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "base_dir", os.getcwd())
        self.update(values)

    def update(self, values: dict[str, Any] | None = None, **more: Any) -> None:
        for key, value in {**(values or {}), **more}.items():
            self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        name = ALIASES.get(key, key)
        spec = DEFAULTS.get(name)
        if spec is None:
            if not name.islower():
                return  # config modules hold constants of their own; only settings matter
            raise ConfigurationError(f"unknown setting {key!r}; see flowq.settings.DEFAULTS")
        if isinstance(spec.default, bool) or spec.type is bool:
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, spec.type) and not isinstance(value, bool) or (
                value is None and isinstance(None, spec.type))  # type: ignore[arg-type]
        if not ok:
            raise ConfigurationError(
                f"setting {name!r} must be {_type_name(spec.type)}, got {type(value).__name__} "
                f"({value!r})")
        if spec.choices is not None and value not in spec.choices:
            raise ConfigurationError(f"setting {name!r} must be one of "
                                     f"{', '.join(map(repr, spec.choices))}, got {value!r}")
        self._values[name] = value

    def __getitem__(self, key: str) -> Any:
        name = ALIASES.get(key, key)
        value = self._raw(name)
        if name == "data_dir":
            return os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(value)))
        return value

    def _raw(self, name: str) -> Any:
        if name in self._values:
            return self._values[name]
        env = ENVIRONMENT.get(name)
        if env and os.environ.get(env):
            return os.environ[env]
        try:
            return DEFAULTS[name].default
        except KeyError:
            raise ConfigurationError(f"unknown setting {name!r}") from None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "base_dir":
            object.__setattr__(self, name, os.path.abspath(value))
        else:
            self[name] = value

    def is_set(self, name: str) -> bool:
        return ALIASES.get(name, name) in self._values

    def as_dict(self, masked: bool = True) -> dict[str, Any]:
        """Every setting with its effective value; secrets masked (see :func:`mask_secrets`)
        unless ``masked=False``."""
        return {name: mask_secrets(self[name], name) if masked else self[name]
                for name in DEFAULTS}

    def changed(self) -> dict[str, Any]:
        """The settings given by the app or the environment (not defaults), masked."""
        return {name: value for name, value in self.as_dict().items()
                if name in self._values or os.environ.get(ENVIRONMENT.get(name, ""))}

    def __repr__(self) -> str:
        given = {k: v for k, v in self.as_dict().items() if k in self._values}
        return f"<Settings {given!r}>"


def _type_name(spec: type | tuple[type, ...]) -> str:
    types = spec if isinstance(spec, tuple) else (spec,)
    return " or ".join("None" if t is type(None) else t.__name__ for t in types)
