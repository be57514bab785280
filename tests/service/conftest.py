"""Fixtures the service tests share: a mesh that wants an API key, and an admin's client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shiftboss.client import AsyncClient
from shiftboss.services.keys.service import create_admin_key
from shiftboss.services.mesh import Mesh
from shiftboss.settings import Settings
from tests.conftest import running_mesh


@pytest.fixture
async def secured(settings: Settings) -> AsyncIterator[Mesh]:
    async with running_mesh(settings.replace(auth=True)) as mesh:
        yield mesh


@pytest.fixture
async def admin(secured: Mesh) -> AsyncIterator[AsyncClient]:
    key = await create_admin_key(secured.settings, "root")
    async with AsyncClient(secured.settings.api_address, timeout=10, api_key=key) as client:
        yield client
