"""The LangChain standard tests are ``async def`` methods without marks (LangChain's own packages
run pytest-asyncio in auto mode). Here they are marked for pytest-asyncio where they are
collected, so the rest of the suite keeps strict mode."""

from __future__ import annotations

import inspect
from collections.abc import Generator
from typing import Any

import pytest


@pytest.hookimpl(hookwrapper=True, trylast=True)  # innermost wrapper: runs before pytest-asyncio's looks at the item
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Generator[None, Any, None]:
    outcome = yield
    items = outcome.get_result()
    for item in items if isinstance(items, list) else [items] if items is not None else []:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.add_marker(pytest.mark.asyncio)
