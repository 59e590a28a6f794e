"""The short way's Redis connection (core/light_redis.py) against the session's real
redis-server, which asks for a password as the embedded one does."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import redis

from orchestrator.core.light_redis import LightRedis, RedisReplyError


def test_a_pipeline_answers_each_command_in_order_on_the_database_the_url_names(redis_url):
    url = redis_url.rsplit("/", 1)[0] + "/4"
    redis.Redis.from_url(url).set("light:a", b"1")

    with LightRedis.connect(url) as light:
        replies = light.pipeline([("MGET", "light:a", "light:none"), ("XRANGE", "light:nostream", "-", "+"),
                                  ("PING",)])

    assert replies == [[b"1", None], [], b"PONG"]


def test_a_wrong_password_is_refused(redis_url):
    parts = urlsplit(redis_url)
    wrong = parts._replace(netloc=f":not-the-password@{parts.hostname}:{parts.port}").geturl()

    with pytest.raises(RedisReplyError):
        LightRedis.connect(wrong)


def test_redis_out_of_reach_is_an_os_error():
    with pytest.raises(OSError):
        LightRedis.connect("redis://127.0.0.1:9/0", timeout=2)


def test_a_url_it_does_not_speak_is_left_to_redis_py():
    assert LightRedis.connect("rediss://127.0.0.1:6379/0") is None
