"""What the add-on image may install without a compiler: Home Assistant's Alpine base (musl),
Python 3.13, on aarch64 and amd64.

Every runtime dependency (pyproject.toml ``dependencies``, and what they pull in) must come as a
wheel for both platforms or be pure Python; tests/test_addon_wheels.py asks PyPI the way pip in
the image would. A library that ships no musl wheel is listed in ``NO_MUSL_WHEEL`` with the
reason, and the Dockerfile builds it in a builder stage (the compiler stays out of the final
image); the test checks the Dockerfile names it.
"""

from __future__ import annotations

PYTHON_VERSION = "3.13"
PLATFORMS = ("musllinux_1_2_aarch64", "musllinux_1_2_x86_64")

# Distribution name (as in pyproject.toml) -> why it has no musl wheel and how the image gets it.
NO_MUSL_WHEEL: dict[str, str] = {}
