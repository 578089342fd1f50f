"""Saving from the editor against a real appliance process: a symlinked configuration stays a
symlink, and concurrent saves each get an answer (applied in turn, or 409), never a reset."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.appliance import Appliance, appliance_document

SAVES = 12


def save(appliance: Appliance, document: dict[str, Any]) -> tuple[int, Any] | OSError:
    """PUT /api/config on a connection of its own; a reset or refusal is returned, not raised."""
    try:
        return appliance.request("PUT", "/api/config", json.dumps(document).encode(), timeout=30)
    except OSError as exc:
        return exc


def test_a_save_writes_through_a_symlinked_configuration(tmp_path: Path) -> None:
    appliance = Appliance(tmp_path, appliance_document(tmp_path / "data"))
    appliance.write_config()
    real = tmp_path / "real" / "edge.yaml"
    real.parent.mkdir()
    appliance.config_path.rename(real)
    appliance.config_path.symlink_to(real)
    appliance.start(write_config=False)
    try:
        document = {**appliance.document, "node_name": "through-the-link"}
        result = save(appliance, document)
        assert not isinstance(result, OSError) and result[0] == 200, result
        assert appliance.config_path.is_symlink() and appliance.config_path.resolve() == real
        assert yaml.safe_load(real.read_text())["node_name"] == "through-the-link"
        backup = real.with_name("edge.yaml.bak")
        assert yaml.safe_load(backup.read_text())["node_name"] == appliance.document["node_name"]
        assert result[1]["backup"] == str(backup)
        assert real.stat().st_mode & 0o777 == 0o600
    finally:
        appliance.stop()


def concurrent_saves(appliance: Appliance, change: str) -> list[tuple[int, Any] | OSError]:
    """SAVES saves at once, each on its own connection, each with a different ``change``."""
    documents = []
    for index in range(SAVES):
        document = json.loads(json.dumps(appliance.document))
        if change == "node_name":
            document["node_name"] = f"saved-{index}"
        elif change == "web.password":
            document["web"]["password"] = f"password-of-save-{index:02d}"
        else:
            document["messaging"]["high_water_mark"] = 100 + index
        documents.append(document)
    with ThreadPoolExecutor(SAVES) as pool:
        return list(pool.map(lambda d: save(appliance, d), documents))


def test_concurrent_renames_keep_the_web_up_and_are_each_answered(tmp_path: Path) -> None:
    """The pages read the node name live: a rename restarts no listener (it reset 9 of 12)."""
    appliance = Appliance(tmp_path, appliance_document(tmp_path / "data")).start()
    try:
        results = concurrent_saves(appliance, "node_name")
        errors = [result for result in results if isinstance(result, OSError)]
        assert not errors, f"{len(errors)} of {SAVES} saves got no answer: {errors}"
        assert [code for code, _ in results] == [200] * SAVES, results  # type: ignore[misc]
        saved = yaml.safe_load(appliance.config_path.read_text())["node_name"]
        assert saved in {f"saved-{index}" for index in range(SAVES)}
    finally:
        appliance.stop()


def test_concurrent_saves_are_applied_in_turn_and_each_answered(tmp_path: Path) -> None:
    appliance = Appliance(tmp_path, appliance_document(tmp_path / "data")).start()
    try:
        results = concurrent_saves(appliance, "high_water_mark")  # restarts the bus, not the web
        errors = [result for result in results if isinstance(result, OSError)]
        assert not errors, f"{len(errors)} of {SAVES} saves got no answer: {errors}"
        assert [code for code, _ in results] == [200] * SAVES, results  # type: ignore[misc]
        saved = yaml.safe_load(appliance.config_path.read_text())["messaging"]["high_water_mark"]
        assert 100 <= saved < 100 + SAVES
        assert appliance.wait_healthy()["ok"] is True
    finally:
        appliance.stop()


@pytest.mark.xfail(
    strict=True,
    reason=(
        "web/service.py closes its listening socket when a save restarts it, so connections still "
        "in the accept queue are reset; handing the listener to the new instance (tried on "
        "hard-web) is not enough: the replaced instance's cleanup also closes connections it "
        "accepted before their request arrived (RemoteDisconnected), so 8-9 of 12 still fail"
    ),
)
def test_concurrent_saves_that_restart_the_web_are_each_answered(tmp_path: Path) -> None:
    appliance = Appliance(tmp_path, appliance_document(tmp_path / "data")).start()
    try:
        results = concurrent_saves(appliance, "web.password")  # a web setting restarts the web
        errors = [result for result in results if isinstance(result, OSError)]
        assert not errors, f"{len(errors)} of {SAVES} saves got no answer: {errors}"
    finally:
        appliance.stop()
