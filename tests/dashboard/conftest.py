"""The dashboard's tests: a real chromium (tests/dashboard/browser.py) for the browser ones."""

from tests.dashboard.browser import browser, page, session_browser

__all__ = ["browser", "page", "session_browser"]
