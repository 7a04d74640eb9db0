"""Listening ports are picked below the kernel's ephemeral range, so no outgoing
connection can take one between its choosing and a server listening on it."""

import socket
from pathlib import Path

import pytest

from deploy import embedded
from deploy.embedded import free_ports, listen_port_range


def test_ports_are_free_different_and_below_the_ephemeral_range() -> None:
    ports = free_ports(20)
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert len(set(ports)) == 20
    assert all(embedded.LISTEN_PORTS_LOW <= port < low for port in ports), ports
    for port in ports:  # each can be listened on
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
            server.listen()


def test_a_port_in_use_is_never_given(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_ports(1)[0]))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(embedded, "listen_port_range", lambda: range(port, port + 2))
        assert free_ports(1) == [port + 1]
        with pytest.raises(RuntimeError, match=rf"no 2 free ports in {port}-{port + 1} after"):
            free_ports(2)


def test_the_range_without_a_kernel_answer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(embedded, "_EPHEMERAL_RANGE", tmp_path / "absent")
    assert listen_port_range() == range(embedded.LISTEN_PORTS_LOW, 32_768)
