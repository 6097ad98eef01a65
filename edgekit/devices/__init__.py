"""Devices over SSH: a registry, setup of edgekit's runtime side there, and bench runs on them.

* registry.py: ``devices.toml`` in the config folder (``$EDGEKIT_CONFIG_DIR``).
* ssh.py: the asyncssh transport (``~/.ssh/config``, agent, known_hosts checked).
* probe.py (stdlib only) and agent.py (edgekit): what runs on the device.
* setup.py: a wheel of this edgekit, pushed and installed (or unpacked for an existing Python).
* push.py: artifacts pushed once, checked for free disk, resumable.
* bench.py: ``bench_devices``, the runs on several devices in parallel, measured against predicted.
* api.py: ``edgekit.bench``: on this machine, or with ``device=`` through bench.py.
* loopback.py: a stand-in device on 127.0.0.1 (tests, benchmark, demo).

Nothing is imported here: ``probe`` and ``agent`` run on devices, and ``import edgekit`` stays light.
"""
