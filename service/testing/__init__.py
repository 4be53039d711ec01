"""Test doubles shipped with the package, as aiohttp ships aiohttp.test_utils.

The test suite and the benchmarks (bench/) both use them: the fake X API (`fake_x`) and the
loopback rendering of the compose stack's HAProxy config (`loopback`). Nothing in the service
imports this package at runtime, and its modules import only the service's runtime
dependencies at module level, so the wheel and the Docker image carry it without a dev extra.
"""
