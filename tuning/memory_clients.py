#!/usr/bin/env python3
"""Raw MQTT 3.1.1 clients for tuning/memory.sh (standard library only; no client library between
the broker and what is measured).

  memory_clients.py retained PORT COUNT SIZE
      one client publishes COUNT retained QoS 1 messages of SIZE bytes on mem/retained/{i}
      (up to 1,000 unacknowledged), waits for every PUBACK, prints "ready", waits for a line on
      stdin, disconnects.
  memory_clients.py subscriptions PORT CLIENTS FILTERS
      CLIENTS clients connect (keep-alive 60), print "connected", wait for a line on stdin, then
      each subscribes to FILTERS distinct filters mem/{client}/{j}/x (100 per SUBSCRIBE, QoS 1) and
      waits for its SUBACKs; prints "ready", waits for a line on stdin, exits.
"""
import socket
import sys


def remaining_length(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(s):
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def packet(first, body):
    return bytes([first]) + remaining_length(len(body)) + body


class Reader:
    """Packets from a socket, one at a time."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the broker closed the connection")
            self.buf += chunk

    def packet(self):
        self._fill(2)
        length, mult, i = 0, 1, 1
        while True:
            self._fill(i + 1)
            b = self.buf[i]
            length += (b & 127) * mult
            mult *= 128
            i += 1
            if not b & 128:
                break
        self._fill(i + length)
        first, body = self.buf[0], self.buf[i:i + length]
        self.buf = self.buf[i + length:]
        return first >> 4, body


def connect(port, client_id):
    sock = socket.create_connection(("127.0.0.1", port))
    body = string("MQTT") + bytes([4, 2]) + (60).to_bytes(2, "big") + string(client_id)
    sock.sendall(packet(0x10, body))
    reader = Reader(sock)
    kind, ack = reader.packet()
    if kind != 2 or ack[1] != 0:
        raise SystemExit(f"CONNECT of {client_id} refused: {kind} {ack!r}")
    return sock, reader


def wait_line():
    sys.stdin.readline()


def retained(port, count, size):
    sock, reader = connect(port, "mem-retained")
    payload = b"x" * size
    sent = acked = 0
    while acked < count:
        while sent < count and sent - acked < 1000:
            pid = sent % 65535 + 1
            body = string(f"mem/retained/{sent}") + pid.to_bytes(2, "big") + payload
            sock.sendall(packet(0x33, body))
            sent += 1
        kind, _ = reader.packet()
        if kind == 4:
            acked += 1
    print("ready", flush=True)
    wait_line()
    sock.sendall(packet(0xE0, b""))


def subscriptions(port, clients, filters):
    conns = [connect(port, f"mem-sub-{i}") for i in range(clients)]
    print("connected", flush=True)
    wait_line()
    for i, (sock, reader) in enumerate(conns):
        batches = range(0, filters, 100)
        for n, start in enumerate(batches):
            topics = (f"mem/{i}/{j}/x" for j in range(start, min(filters, start + 100)))
            body = (n + 1).to_bytes(2, "big") + b"".join(string(t) + b"\x01" for t in topics)
            sock.sendall(packet(0x82, body))
        for _ in batches:
            kind, _ = reader.packet()
            if kind != 9:
                raise SystemExit(f"expected SUBACK, got packet type {kind}")
    print("ready", flush=True)
    wait_line()


if __name__ == "__main__":
    mode, port, a, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    {"retained": retained, "subscriptions": subscriptions}[mode](port, a, b)
