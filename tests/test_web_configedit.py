"""Masking and restoring secrets in the raw configuration, and the form built from the schema."""

from __future__ import annotations

import pytest

from argentic_edge.config import MASK, ConfigError, Problem, parse_config
from argentic_edge.web.configedit import (
    load_text,
    masked_text,
    problems_json,
    restore_document,
    restore_text,
)
from argentic_edge.web.schema import form_fields, is_secret

TEXTS = [
    "web:\n  password: hunter2   # mine\n  api_token: 'tok en'\n",
    'x: &p "hunter2"\nweb:\n  password: *p\n',
    "bridge:\n  mqtt:\n    password: |\n      multi\n      line\n    port: 1883\n",
    "messaging: {protocol: mqtt, url: broker.lan, password: hunter2}\n",
    "llm:\n  provider: gemini\n  google_gemini_api_key: AIza-hunter2\n",
    "web: {password: '${WEB_PASSWORD}', api_token: null}\n",
]


@pytest.mark.parametrize("text", TEXTS)
def test_masking_hides_every_literal_secret_and_restoring_gives_the_file_back(text: str) -> None:
    masked = masked_text(text)
    assert "hunter2" not in masked and "tok en" not in masked and "multi" not in masked
    assert load_text(restore_text(masked, text)) == load_text(text)
    # The form's way: the masked document comes back, restored value by value.
    shown = load_text(masked)
    assert restore_document(shown, load_text(text), shown) == load_text(text)
    if "|" not in text:  # one-line secrets come back exactly as they were written
        assert restore_text(masked, text) == text


def test_references_are_shown_and_secrets_found_by_schema_alias_and_name() -> None:
    document = load_text(TEXTS[3] + TEXTS[4] + TEXTS[5].replace("web", "other"))
    assert is_secret(("messaging", "password"), document)  # the uplink form of bridge.mqtt
    assert is_secret(("llm", "google_gemini_api_key"), document)
    assert not is_secret(("messaging", "url"), document)
    assert load_text(masked_text(TEXTS[5]))["web"]["password"] == "${WEB_PASSWORD}"


def test_a_retyped_secret_wins_and_an_unchanged_mask_keeps_the_stored_one() -> None:
    stored, shown = load_text(TEXTS[0]), load_text(masked_text(TEXTS[0]))
    submitted = load_text(masked_text(TEXTS[0]))
    submitted["web"]["api_token"] = "new-token"
    submitted["note"] = MASK  # typed by the user where no secret is: kept as typed
    restored = restore_document(submitted, stored, shown)
    assert restored == {"web": {"password": "hunter2", "api_token": "new-token"}, "note": MASK}
    with pytest.raises(ConfigError) as caught:
        restore_document({"bridge": {"mqtt": {"password": MASK}}}, stored, shown)
    assert caught.value.problems[0].path == "bridge.mqtt.password"


def test_problem_values_at_secret_paths_are_masked() -> None:
    error = ConfigError(
        [
            Problem("web.password", "hunter2", "expected a string"),
            Problem("bridge.routes[0].topic", "a b", "expected a topic filter"),
            Problem("web", {"password": "hunter2"}, "expected a mapping"),
        ]
    )
    shown = problems_json(error, {})
    assert [p["value"] for p in shown] == [MASK, "a b", "<dict>"]


def test_the_form_follows_aliases_and_the_uplink_form() -> None:
    fields = {f["path"]: f for f in form_fields(load_text(masked_text(TEXTS[3])))}
    assert fields["bridge.mqtt.broker_address"]["keys"] == ["messaging", "url"]
    assert fields["bridge.mqtt.password"]["value"] == MASK
    assert not any(path.startswith("messaging.") for path in fields)  # the bus keeps defaults
    fields = {f["path"]: f for f in form_fields({"messaging": {"url": "10.0.0.2"}})}
    assert fields["messaging.broker_address"]["where"] == "messaging.url"
    assert fields["messaging.port"]["default"] == 5555
    assert fields["web.password"]["kind"] == "secret"
    assert fields["bridge.routes"]["kind"] == "yaml"
    # Every field's default is itself a valid value for it.
    parse_config({"web": {"port": fields["web.port"]["default"]}})
