"""The README's configuration table is the settings model's, variable for variable."""

from __future__ import annotations

import re
from pathlib import Path

from producer.settings import Settings, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_table_matches_the_settings_model() -> None:
    text = README.read_text()
    block = re.search(r"<!-- settings-table:start -->\n(.*?)<!-- settings-table:end -->", text, re.S)
    assert block, "README lost its settings table markers"
    assert block.group(1).strip() == settings_table().strip(), (
        "README configuration table is out of date: paste producer.settings.settings_table()"
    )
    for name in Settings.model_fields:
        assert f"`{name}`" in block.group(1)


def test_readme_quick_start_has_the_two_commands() -> None:
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "bin/demo" in quick and "bin/test" in quick
