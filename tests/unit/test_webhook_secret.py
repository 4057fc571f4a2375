"""WEBHOOK_SECRET, the one secret of every push webhook, and GITHUB_WEBHOOK_SECRET, its former name."""

from __future__ import annotations

import pytest

from producer.settings import ConfigError, load_settings


def test_webhook_secret_and_its_former_name() -> None:
    assert load_settings({}).webhook_secret is None
    assert load_settings({"WEBHOOK_SECRET": "s-new"}).webhook_secret == "s-new"
    assert load_settings({"GITHUB_WEBHOOK_SECRET": "s-old"}).webhook_secret == "s-old"
    both = load_settings({"WEBHOOK_SECRET": "s-same", "GITHUB_WEBHOOK_SECRET": "s-same"})
    assert both.webhook_secret == "s-same"
    assert both.public_dict()["WEBHOOK_SECRET"] == "***"
    assert "s-same" in both.secret_values()
    assert "s-same" not in repr(both)


def test_two_different_webhook_secrets_are_one_clear_line_without_either() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"WEBHOOK_SECRET": "s-new-123", "GITHUB_WEBHOOK_SECRET": "s-old-456"})
    assert caught.value.problems == [
        "GITHUB_WEBHOOK_SECRET: differs from WEBHOOK_SECRET (its new name): set only WEBHOOK_SECRET"
    ]
    with pytest.raises(ConfigError) as caught:
        load_settings({"WEBHOOK_SECRET": "bad\x01secret", "LOG_LEVEL": "x-bad\x01secret"})
    assert "bad\x01secret" not in str(caught.value)
    assert caught.value.problems[0] == "WEBHOOK_SECRET: must not contain control characters"
