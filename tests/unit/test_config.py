"""Settings: one described field each in chalicelib/config.py, the README's table generated from
them, invalid values falling back to the default, and the code reading only settings that exist
(and every setting that exists)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

from chalicelib import config
from chalicelib.config import Settings, markdown_table, settings

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"
# A call of secret() with an argument (a bare `secret()` is prose, in a docstring).
_SECRET_CALL = re.compile(r"(?<![\w.])(?:config\.)?secret\(\s*(?P<argument>[^)\s][^)]*)\)")


@cache
def sources(*folders: str) -> dict[str, str]:
    """Relative path → text of app.py and every .py file under the folders."""
    paths = [ROOT / "app.py", *(path for folder in folders for path in sorted((ROOT / folder).rglob("*.py")))]
    return {str(path.relative_to(ROOT)): path.read_text(encoding="utf-8") for path in paths}


def is_secret(name: str) -> bool:
    field = Settings.model_fields[name]
    return bool((field.json_schema_extra or {}).get("secret"))  # type: ignore[union-attr]


# --- The README ------------------------------------------------------------------------------------


def test_the_readme_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(BEGIN) == 1 and readme.count(END) == 1, f"README.md needs one {BEGIN} ... {END} block"
    block = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    assert block.strip("\n") + "\n" == markdown_table(), (
        "README.md's configuration table is not the one chalicelib/config.py describes: run "
        "`.venv/bin/python -m chalicelib.config` and paste its output between the settings markers"
    )
    assert block.startswith("\n") and block.endswith("\n"), "the markers sit on lines of their own"


def test_every_setting_has_a_description() -> None:
    undescribed = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert undescribed == []


def test_the_table_has_one_row_per_setting_and_escapes_pipes() -> None:
    rows = markdown_table().splitlines()[2:]
    assert [row.split(" | ")[0].strip("| `") for row in rows] == [name.upper() for name in Settings.model_fields]
    assert all(row.count(" | ") == 3 for row in rows), "a cell holds an unescaped pipe"
    assert config._cell("a|b\n  c") == "a\\|b c"
    assert config._code("x|y") == "`x\\|y`"
    assert config._code("say `hi`") == "`` say `hi` ``"


# --- Reading the environment ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WEBHOOK_MAX_ATTEMPTS", "many"),
        ("WEBHOOK_MAX_ATTEMPTS", "2.5"),
        ("WEBHOOK_MAX_ATTEMPTS", "0"),  # below the minimum
        ("WEBHOOK_TIMEOUT_SECONDS", "soon"),
        ("WEBHOOK_TIMEOUT_SECONDS", "0.05"),
        ("WEBHOOK_TIMEOUT_SECONDS", "inf"),  # beyond the maximum
        ("WEBHOOK_RETRY_BASE_SECONDS", "-1"),
        ("WEBCHAT_SESSION_TTL_SECONDS", "60"),
        ("MAX_BODY_BYTES", "5MB"),
    ],
)
def test_an_invalid_value_falls_back_to_the_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    read = getattr(settings(), variable.lower())

    assert read == Settings.model_fields[variable.lower()].default
    assert f"ignoring an invalid value of {variable}" in capsys.readouterr().err


@pytest.mark.parametrize("variable", ["POWERTOOLS_METRICS_NAMESPACE", "CONSENT_STOP_TEXT", "TWILIO_API_BASE_URL"])
def test_a_blank_value_means_the_default(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "  ")

    assert getattr(settings(), variable.lower()) == Settings.model_fields[variable.lower()].default != ""


def test_valid_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("WEBHOOK_TIMEOUT_SECONDS", "0.1")
    monkeypatch.setenv("WEBHOOK_RETRY_BASE_SECONDS", "0")
    monkeypatch.setenv("ALLOW_INSECURE_WEBHOOK_URLS", "true")
    monkeypatch.setenv("WEBCHAT_ALLOWED_ORIGINS", " https://shop.example.com/ ,,https://app.example.com")

    read = settings()

    assert (read.webhook_max_attempts, read.webhook_timeout_seconds, read.webhook_retry_base_seconds) == (3, 0.1, 0)
    assert read.allow_insecure_webhook_urls is True
    assert read.allowed_origins == ("https://shop.example.com", "https://app.example.com")


def test_settings_see_an_environment_change_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "4")
    first = settings()
    assert first.webhook_max_attempts == 4
    assert settings() is first, "an unchanged environment reuses the settings"

    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "5")
    assert settings().webhook_max_attempts == 5

    monkeypatch.delenv("WEBHOOK_MAX_ATTEMPTS")
    assert settings().webhook_max_attempts == Settings.model_fields["webhook_max_attempts"].default


# --- The code and the settings agree -----------------------------------------------------------------


def test_every_secret_read_names_a_secret_setting() -> None:
    calls = [
        (path, match.group("argument").strip())
        for path, text in sources("chalicelib", "handlers").items()
        for match in _SECRET_CALL.finditer(text)
        if not text[: match.start()].endswith("def ")
    ]
    assert calls, "the scan found no secret() call: is the pattern still right?"
    named = {argument.strip("\"'") for _, argument in calls}
    not_literal = [(path, argument) for path, argument in calls if not re.fullmatch(r"([\"'])\w+\1", argument)]
    assert not_literal == [], "secret() takes the setting's name as a literal, so this test can check it"
    unknown = sorted(name for name in named if name not in Settings.model_fields)
    assert unknown == [], "secret() of a name that is no setting"
    not_secret = sorted(name for name in named if not is_secret(name))
    assert not_secret == [], "secret() of a setting not marked secret (json_schema_extra={'secret': True})"


def test_every_setting_is_read_somewhere() -> None:
    """A setting nobody reads is documented but does nothing. A read is an attribute access
    (`settings().table_name`, `config.link_ttl_hours`, a property's `self.business_name`) or a
    `secret("name")` call, in app.py, chalicelib/ (config.py's own properties and helpers count),
    handlers/ or local/."""
    texts = "\n".join(sources("chalicelib", "handlers", "local").values())
    unread = [
        name
        for name in Settings.model_fields
        if not re.search(rf"\.{name}\b|\bsecret\(\s*[\"']{name}[\"']\s*\)", texts)
    ]
    assert unread == [], "settings nothing reads: read them through settings()/secret(), or delete them"


def test_only_config_reads_the_environment() -> None:
    readers = [
        path
        for path, text in sources("chalicelib", "handlers").items()
        if path != "chalicelib/config.py" and re.search(r"\bos\.environ\b|\bgetenv\(", text)
    ]
    assert readers == [], "read settings with chalicelib.config.settings() / secret(), not the environment"
