"""The configuration page's table (docs/configuration.md) documents every setting, with its variable and default."""

from __future__ import annotations

from pathlib import Path

from wrenn_platform.control_plane.settings import Settings

CONFIGURATION = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def _configuration_rows() -> dict[str, list[str]]:
    text = CONFIGURATION.read_text()
    section = text[text.index("<!-- section:configuration -->"):text.index("<!-- /section:configuration -->")]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells] for cells in rows[1:]}


def test_every_setting_is_documented() -> None:
    rows = _configuration_rows()
    missing = [name for name in Settings.model_fields if name not in rows]
    assert not missing, f"add these settings to the table in docs/configuration.md: {missing}"
    for name, field in Settings.model_fields.items():
        _, env, default, meaning = rows[name]
        assert env == f"`WRENN_{name.upper()}`"
        shown = str(field.default).lower() if isinstance(field.default, bool) else str(field.default)
        assert default == (f"`{shown}`" if shown else "(empty)"), name
        assert meaning
    assert not set(rows) - set(Settings.model_fields), "docs/configuration.md documents settings that do not exist"
