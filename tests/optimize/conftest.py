"""Fixtures for the optimize tests: the loopback SSH device of tests/devices (a real asyncssh server on 127.0.0.1
standing in for a board, a user with its own ~/.ssh and device registry), for optimize's --device run."""

from tests.devices.conftest import device_ready, loopback, ssh_user  # noqa: F401
