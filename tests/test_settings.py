"""Each setting is declared once; the CLI flag, the NB2API_* variable, the create_app keyword and
README's table all come from that declaration and must agree."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import click
import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from nb2api.cli import app as cli
from nb2api.settings import ServerOptions, Settings, SettingsKeywords, markdown_table
from nb2api.settings import env_var as variable

README = Path(__file__).parent.parent / "README.md"


def _serve_options() -> dict[str, click.Parameter]:
    command = typer.main.get_command(cli).commands["serve"]  # type: ignore[attr-defined]
    return {p.name: p for p in command.params if p.param_type_name == "option"}


@pytest.mark.parametrize("model", [Settings, ServerOptions])
def test_every_field_has_a_flag_named_after_it_with_its_help(model):
    options = _serve_options()
    for name, field in model.model_fields.items():
        option = options[name]
        assert f"--{name.replace('_', '-')}" in option.opts
        assert field.description and field.description in option.help
        assert f"[env: {variable(name)}]" in option.help


def test_create_app_keywords_are_the_settings_fields():
    hints = typing.get_type_hints(SettingsKeywords)
    assert list(hints) == list(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        assert hints[name] == field.annotation or typing.get_args(field.annotation)[0] == \
            hints[name], name


@pytest.mark.parametrize("model", [Settings, ServerOptions])
def test_readme_table_is_generated_from_the_declaration(model):
    text = README.read_text()
    found = re.search(rf"<!-- settings:{model.__name__} -->\n(.*?)<!-- /settings:", text, re.S)
    assert found, f"README lacks the generated table of {model.__name__}"
    assert found.group(1) == markdown_table(model), "run: python -m nb2api.settings"


def test_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("NB2API_MAX_WORKERS", "3")
    monkeypatch.setenv("NB2API_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("NB2API_MAX_BODY_SIZE", "1MiB")
    monkeypatch.setenv("NB2API_METRICS", "false")
    settings = Settings()
    assert settings.max_workers == 3
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.max_body_size == 1024**2
    assert settings.metrics is False
    assert Settings(max_workers=5).max_workers == 5  # a keyword beats the variable


def test_flag_beats_variable_and_both_are_validated_alike(monkeypatch, tmp_path):
    seen: dict[str, Settings] = {}

    def fake_load(notebook, settings, quiet=True, log_format="text"):
        seen["settings"] = settings
        raise typer.Exit(0)

    monkeypatch.setattr("nb2api.cli._load", fake_load)
    monkeypatch.setenv("NB2API_MAX_QUEUE", "7")
    monkeypatch.setenv("NB2API_TIMEOUT", "2.5")
    result = CliRunner().invoke(cli, ["serve", "x.ipynb", "--max-queue", "9", "--no-metrics",
                                      "--cors-origin", "https://a.example", "--log-format",
                                      "json"])
    assert result.exit_code == 0, result.output
    settings = seen["settings"]
    assert (settings.max_queue, settings.timeout, settings.metrics) == (9, 2.5, False)
    assert settings.cors_origins == ("https://a.example",)

    bad = CliRunner().invoke(cli, ["serve", "x.ipynb", "--max-workers", "0"])
    assert bad.exit_code == 2 and "--max-workers" in bad.output
    monkeypatch.setenv("NB2API_MAX_WORKERS", "zero")
    bad = CliRunner().invoke(cli, ["serve", "x.ipynb"])
    assert bad.exit_code == 2 and "max-workers" in bad.output


def test_unknown_keywords_and_bad_values_are_refused(tmp_path):
    with pytest.raises(TypeError, match="no_such_setting"):
        Settings().updated(no_such_setting=1)
    with pytest.raises(ValidationError):
        Settings(max_queue=-1)
    with pytest.raises(ValidationError, match="token is empty"):
        Settings(token="")


def test_settings_repr_hides_the_token():
    assert "s3cret" not in repr(Settings(token="s3cret"))
