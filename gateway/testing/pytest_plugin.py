"""The test kit's pytest plugin: the ``phone_system`` fixture (see ``gateway.testing.phone``).

Installed with the package (the ``pytest11`` entry point ``gateway``), so a test can use the
fixture without any import or conftest. It needs pytest-asyncio (the fixture is async); without
it the plugin defines nothing, and says so only if a test asks for the fixture.

::

    async def test_greeting(phone_system):
        phone = await phone_system(agent=my_agent, script=[Reply("Hello!")])
        call = await phone.call()
        assert (await call.listen()).text == "Hello!"

Every ``PhoneSystem`` the fixture started is closed after the test (calls hung up, servers
stopped); a simulator that failed during the test fails it then.
"""

from __future__ import annotations

# Imported by pytest in every run where the package is installed, used or not: nothing heavy
# here. The kit (the gateway, the SDK, the servers) loads when a test asks for the fixture.
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.testing.phone import PhoneSystem

try:
    # Free in a pytest run: pytest-asyncio's own plugin imports it anyway.
    import pytest_asyncio
except ImportError:  # pragma: no cover - the kit needs pytest-asyncio; say so when used
    import pytest

    @pytest.fixture
    def phone_system() -> None:
        pytest.fail("the phone_system fixture needs pytest-asyncio: pip install pytest-asyncio")

else:

    @pytest_asyncio.fixture
    async def phone_system() -> AsyncIterator[Callable[..., Coroutine[Any, Any, PhoneSystem]]]:
        """``phone = await phone_system(agent, script, **options)``: a started ``PhoneSystem``
        (same arguments), closed after the test."""
        from gateway.testing.phone import PhoneSystem

        started: list[PhoneSystem] = []

        async def start(*args: Any, **kwargs: Any) -> PhoneSystem:
            system = PhoneSystem(*args, **kwargs)
            await system.start()
            started.append(system)
            return system

        yield start
        errors: list[BaseException] = []
        for system in reversed(started):
            try:
                await system.close()
            except Exception as error:  # close them all, then report the first failure
                errors.append(error)
        if errors:
            raise errors[0]
