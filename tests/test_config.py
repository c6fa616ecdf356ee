"""StreamConfig.from_env reads LibreChat's variables the way LibreChat does."""

from __future__ import annotations

import pytest

from streamcheck.impl._config import (
    CLEANUP_INTERVAL_S,
    COMPLETED_TTL_S,
    EARLY_BUFFER_MAX_BYTES,
    EARLY_BUFFER_MAX_EVENTS,
    IDLE_PROBE_S,
    MAX_EVENT_BYTES,
    REORDER_CAPACITY,
    REORDER_TIMEOUT_S,
    RUNNING_TTL_S,
    STALE_JOB_TIMEOUT_S,
    StreamConfig,
)
from streamcheck.impl.redis import Keys


def test_defaults_without_any_variable_are_memory_mode_with_spec_timings() -> None:
    config = StreamConfig.from_env({})
    assert config == StreamConfig()
    assert (config.use_redis, config.use_redis_streams, config.use_redis_cluster) == (
        False,
        False,
        False,
    )
    assert config.redis_url is None
    assert config.redacted_url is None
    assert config.key_prefix == ""
    assert (config.reorder_timeout_s, config.reorder_capacity) == (0.5, 100)
    assert (config.running_ttl_s, config.completed_ttl_s) == (1200, 300)
    assert config.cleanup_interval_s == 60
    assert (config.early_buffer_max_events, config.early_buffer_max_bytes) == (5000, 8 << 20)
    assert config.max_event_bytes == 1 << 20
    assert config.stale_job_timeout_s == 1200
    assert config.idle_probe_s == 2.0
    assert (
        REORDER_TIMEOUT_S,
        REORDER_CAPACITY,
        RUNNING_TTL_S,
        COMPLETED_TTL_S,
        CLEANUP_INTERVAL_S,
        EARLY_BUFFER_MAX_EVENTS,
        EARLY_BUFFER_MAX_BYTES,
        MAX_EVENT_BYTES,
        STALE_JOB_TIMEOUT_S,
        IDLE_PROBE_S,
    ) == (0.5, 100, 1200, 300, 60, 5000, 8 << 20, 1 << 20, 1200, 2.0)


def test_use_redis_without_redis_uri_names_the_missing_variable() -> None:
    with pytest.raises(ValueError, match=r"^USE_REDIS is enabled but REDIS_URI is not set$"):
        StreamConfig.from_env({"USE_REDIS": "true"})
    with pytest.raises(ValueError, match=r"REDIS_URI"):
        StreamConfig.from_env({"USE_REDIS": "true", "REDIS_URI": "  "})


@pytest.mark.parametrize(
    ("value", "enabled"),
    [("true", True), ("TRUE", True), (" True ", True), ("1", False), ("yes", False), ("", False)],
)
def test_switches_follow_librechat_is_enabled(value: str, enabled: bool) -> None:
    config = StreamConfig.from_env({"USE_REDIS": value, "REDIS_URI": "redis://h:6379"})
    assert config.use_redis is enabled
    assert config.use_redis_streams is enabled  # defaults to USE_REDIS


def test_use_redis_streams_can_turn_streams_off_but_not_on_without_redis() -> None:
    env = {"USE_REDIS": "true", "REDIS_URI": "redis://h:6379", "USE_REDIS_STREAMS": "false"}
    config = StreamConfig.from_env(env)
    assert (config.use_redis, config.use_redis_streams) == (True, False)
    assert StreamConfig.from_env({"USE_REDIS_STREAMS": "true"}).use_redis_streams is False
    with pytest.raises(ValueError, match=r"^use_redis_streams needs use_redis"):
        StreamConfig(use_redis_streams=True)


def test_key_prefix_directly_or_through_another_variable() -> None:
    assert StreamConfig.from_env({"REDIS_KEY_PREFIX": "lc"}).key_prefix == "lc"
    env = {"REDIS_KEY_PREFIX_VAR": "K_REVISION", "K_REVISION": "rev-42"}
    config = StreamConfig.from_env(env)
    assert config.key_prefix == "rev-42"
    # LibreChat's ioredis keyPrefix is `${REDIS_KEY_PREFIX}::`
    assert config.effective_key_prefix == "rev-42::"
    assert Keys(config.effective_key_prefix).job("s1") == "rev-42::stream:{s1}:job"
    assert StreamConfig.from_env({"REDIS_KEY_PREFIX_VAR": "UNSET_VAR"}).key_prefix == ""
    with pytest.raises(ValueError, match=r"^Only either REDIS_KEY_PREFIX_VAR or REDIS_KEY_PREFIX"):
        StreamConfig.from_env({"REDIS_KEY_PREFIX_VAR": "K_REVISION", "REDIS_KEY_PREFIX": "x"})


def test_username_and_password_are_merged_into_the_url_and_redacted() -> None:
    env = {
        "USE_REDIS": "true",
        "REDIS_URI": "redis://127.0.0.1:6380/2",
        "REDIS_USERNAME": "app",
        "REDIS_PASSWORD": "p@ss:w/rd",
    }
    config = StreamConfig.from_env(env)
    assert config.redis_url == "redis://app:p%40ss%3Aw%2Frd@127.0.0.1:6380/2"
    assert config.redacted_url == "redis://app:***@127.0.0.1:6380/2"
    assert "p%40ss" not in repr(config.redacted_url)


def test_the_urls_own_credentials_win_over_the_variables() -> None:
    env = {
        "USE_REDIS": "true",
        "REDIS_URI": "redis://:own@h:6379",
        "REDIS_USERNAME": "envuser",
        "REDIS_PASSWORD": "envpass",
    }
    # as in LibreChat, each of username and password falls back on its own
    assert StreamConfig.from_env(env).redis_url == "redis://envuser:own@h:6379"
    env["REDIS_URI"] = "redis://me:own@h:6379"
    assert StreamConfig.from_env(env).redis_url == "redis://me:own@h:6379"


def test_rediss_is_kept_and_redis_ca_turns_tls_on() -> None:
    env = {"USE_REDIS": "true", "REDIS_URI": "rediss://h.example:6380", "REDIS_PASSWORD": "s"}
    config = StreamConfig.from_env(env)
    assert config.redis_url == "rediss://:s@h.example:6380"
    assert config.redacted_url == "rediss://:***@h.example:6380"

    env = {"USE_REDIS": "true", "REDIS_URI": "redis://h:6379", "REDIS_CA": "/etc/ca.pem"}
    config = StreamConfig.from_env(env)
    assert config.redis_ca == "/etc/ca.pem"
    assert config.redis_url == (
        "rediss://h:6379?ssl_ca_certs=%2Fetc%2Fca.pem&ssl_cert_reqs=required"
    )


def test_cluster_switch_and_several_startup_nodes() -> None:
    env = {"USE_REDIS": "true", "REDIS_URI": "redis://h:7000", "USE_REDIS_CLUSTER": "true"}
    assert StreamConfig.from_env(env).use_redis_cluster is True
    env = {
        "USE_REDIS": "true",
        "REDIS_URI": "redis://:pw@a:7000,redis://b:7001",
    }
    config = StreamConfig.from_env(env)
    assert config.use_redis_cluster is True
    # the first URI's credentials apply to every node
    assert config.redis_url == "redis://:pw@a:7000,redis://:pw@b:7001"
    assert config.redacted_url == "redis://:***@a:7000,redis://:***@b:7001"


def test_timing_overrides_and_their_units() -> None:
    env = {
        "STREAMCHECK_REORDER_TIMEOUT_MS": "250",
        "STREAMCHECK_REORDER_CAPACITY": "7",
        "STREAMCHECK_RUNNING_TTL_S": "30",
        "STREAMCHECK_COMPLETED_TTL_S": "5",
        "STREAMCHECK_CLEANUP_INTERVAL_S": "0.5",
        "STREAMCHECK_EARLY_BUFFER_MAX_EVENTS": "10",
        "STREAMCHECK_EARLY_BUFFER_MAX_BYTES": "4096",
        "STREAMCHECK_MAX_EVENT_BYTES": "1024",
        "STREAMCHECK_STALE_JOB_TIMEOUT_S": "90",
        "STREAMCHECK_IDLE_PROBE_MS": "300",
    }
    config = StreamConfig.from_env(env)
    assert config.reorder_timeout_s == 0.25
    assert config.reorder_capacity == 7
    assert (config.running_ttl_s, config.completed_ttl_s) == (30, 5)
    assert config.cleanup_interval_s == 0.5
    assert (config.early_buffer_max_events, config.early_buffer_max_bytes) == (10, 4096)
    assert config.max_event_bytes == 1024
    assert config.stale_job_timeout_s == 90
    assert config.idle_probe_s == 0.3


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "STREAMCHECK_REORDER_TIMEOUT_MS",
            "soon",
            r"^STREAMCHECK_REORDER_TIMEOUT_MS must be a number",
        ),
        (
            "STREAMCHECK_REORDER_TIMEOUT_MS",
            "0",
            r"^STREAMCHECK_REORDER_TIMEOUT_MS must be positive",
        ),
        ("STREAMCHECK_REORDER_CAPACITY", "1.5", r"^STREAMCHECK_REORDER_CAPACITY must be a whole"),
        ("STREAMCHECK_RUNNING_TTL_S", "-1", r"^STREAMCHECK_RUNNING_TTL_S must be positive"),
        ("STREAMCHECK_MAX_EVENT_BYTES", "99999999", r"^max_event_bytes \(99999999\) exceeds"),
    ],
)
def test_bad_overrides_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StreamConfig.from_env({name: value})


def test_only_redis_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match=r"^REDIS_URI must use redis:// or rediss://"):
        StreamConfig.from_env({"USE_REDIS": "true", "REDIS_URI": "http://h:6379"})


def test_redact_url_handles_cluster_node_lists() -> None:
    from streamcheck.impl._errors import redact_url

    assert (
        redact_url("redis://a:pw@h1:1,redis://a:pw@h2:2") == "redis://a:***@h1:1,redis://a:***@h2:2"
    )
