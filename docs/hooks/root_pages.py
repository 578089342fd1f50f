"""mkdocs hook: the pages that live at the repository's root, served in the manual as they are.

``SECURITY.md``, ``CHANGELOG.md`` and the add-on store page ``DOCS.md`` stay at the root (GitHub
and the Home Assistant Supervisor look for them there); the manual shows the same files instead of
copies, so there is one text of each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
PAGES = {
    "SECURITY.md": "security-policy.md",
    "CHANGELOG.md": "changelog.md",
    "DOCS.md": "addon-options.md",
}


def on_files(files: Files, config: Any, **_: Any) -> Files:
    for source, page in PAGES.items():
        files.append(File.generated(config, page, abs_src_path=str(ROOT / source)))
    return files
