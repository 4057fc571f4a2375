"""The app supervisor learns of the app's exit from an event, not by waking every second to poll."""

from __future__ import annotations

import redis

from producer import app as app_module
from producer.app import AppSupervisor
from producer.settings import load_settings


def test_app_exit_pushes_an_event_that_wakes_the_supervisor(tmp_path, redis_url, capsys):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    settings = load_settings(
        {
            "REDIS_URL": redis_url,
            "WORKSPACE_PATH": str(workspace),
            "DEV_START_COMMAND": "exit 7",
            "INSTANCE_ID": "test",
        }
    )
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    supervisor = AppSupervisor(settings, connection)
    # Its fallback wait is long: only the event can make the exit show within the test's deadline.
    assert app_module.EVENT_WAIT >= 10

    supervisor.start_app("a" * 40)
    event = connection.blpop([settings.keys.app_events], timeout=5)
    assert event is not None, "the app exited but nothing woke the supervisor"
    assert event[1] == "exited"

    supervisor.check_exit()
    assert supervisor.process is None
    assert "DEV_START_COMMAND exited with code 7" in capsys.readouterr().out
