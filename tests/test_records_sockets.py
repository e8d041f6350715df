"""The TCP listener at its edges: out of file descriptors (real EMFILE), over its connection cap.
Every wait is for a condition; timeouts only bound a failure."""

from __future__ import annotations

import os
import resource
import socket
import time

import pytest

from vigil.ingest.records import BadRecord, Record, TcpSource


def wait_for(condition, timeout: float = 30.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def drain(src: TcpSource, until, timeout: float = 30.0) -> list:
    got: list = []
    end = time.monotonic() + timeout
    for batch in src.batches():
        got += batch
        if until(got):
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out; got {got}")
    return got


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count open files")
def test_the_accept_loop_survives_running_out_of_file_descriptors():
    src = TcpSource(port=0, idle_s=0.05)
    client = socket.socket()  # made before the table is full: connecting needs no new descriptor
    with FullFileTable():  # the next accept() gets EMFILE
        client.connect(src.address)  # completed by the kernel, waiting in the backlog
        client.sendall(b"0,a,1\n1,a,2\n")
        wait_for(lambda: src.accept_errors >= 2, what="accept errors to be counted")
        assert src.stats()["listening"] and "Too many open files" in src.stats()["last_accept_error"]
    try:
        client.close()
        # Descriptors free again: the same listener accepts the waiting client and reads its records.
        got = drain(src, lambda g: sum(isinstance(i, Record) for i in g) >= 2)
        assert [i for i in got if isinstance(i, Record)] == [Record(0.0, "a", 1.0), Record(1.0, "a", 2.0)]
        assert src.stats()["accepted"] == 1
    finally:
        src.close()


class FullFileTable:
    """Fill this process's file table (under a lowered limit) until the context ends."""

    def __enter__(self):
        self.soft, self.hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.fillers: list[int] = []
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 16, self.hard))
        try:
            while True:
                self.fillers.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            return self

    def __exit__(self, *exc) -> None:
        for fd in self.fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.soft, self.hard))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc to count open files")
def test_the_packet_listener_survives_running_out_of_file_descriptors():
    from vigil.ingest.ccsds.demo.generator import DemoSpacecraft
    from vigil.ingest.ccsds.source import open_packet_source

    src = open_packet_source("tcp+ccsds://127.0.0.1:0?xtce=demo")
    data = DemoSpacecraft().packets(3.0)
    client = socket.socket()
    try:
        with FullFileTable():
            client.connect(src.address)
            client.sendall(data)
            wait_for(lambda: src.accept_errors >= 2, what="accept errors to be counted")
        assert "Too many open files" in src.stats()["last_accept_error"]
        client.close()
        rows, end = 0, time.monotonic() + 30
        for block in src.blocks():  # served once descriptors are free
            rows += 0 if block is None else block.n_samples
            if rows >= 63 or time.monotonic() > end:
                break
        assert rows == 63
    finally:
        client.close()
        src.close()


def test_connections_over_the_cap_are_refused_and_counted():
    src = TcpSource(port=0, idle_s=0.05, max_connections=2)
    held = [socket.create_connection(src.address) for _ in range(2)]
    try:
        for s in held:
            s.sendall(b"0,a,1\n")
        drain(src, lambda g: len(g) >= 2)  # both are being served
        wait_for(lambda: src.connections == 2, what="two connections open")
        extra = socket.create_connection(src.address)
        extra.settimeout(30)
        assert extra.recv(1) == b""  # closed by the listener at once
        extra.close()
        got = drain(src, lambda g: any(isinstance(i, BadRecord) for i in g))
        assert src.stats()["refused"] == 1
        bad = [i for i in got if isinstance(i, BadRecord)]
        assert "connection refused: 2 connections open (the limit)" in bad[0].reason
        # A served client leaving frees its place.
        held.pop().close()
        wait_for(lambda: src.connections == 1, what="the connection to be released")
        with socket.create_connection(src.address) as again:
            again.sendall(b"5,b,7\n")
            got = drain(src, lambda g: Record(5.0, "b", 7.0) in g)
        assert src.stats()["refused"] == 1
    finally:
        for s in held:
            s.close()
        src.close()
