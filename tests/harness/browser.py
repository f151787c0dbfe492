"""Chromium for browser tests (Playwright drives the system's Chromium)."""

from __future__ import annotations

import os

CHROMIUM = os.environ.get("PROVISIONER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
