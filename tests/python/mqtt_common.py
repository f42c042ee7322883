"""Shared helpers for the paho-mqtt interoperability scripts in this directory.

Each script takes HOST PORT and --protocol {31,311,5}, runs its checks against the broker there, prints
"OK ..." and exits 0, or prints "FAIL: ..." to stderr and exits 1. They work with paho-mqtt 2.x
(CallbackAPIVersion.VERSION2, used when present) and 1.6 (Debian 12's python3-paho-mqtt); older 1.x
lacks wait_for_publish(timeout). Every wait has a timeout, and the whole script is bounded by an alarm,
so a broken broker fails a script instead of hanging it.
"""

import argparse
import os
import queue
import signal
import socket
import sys
import threading
import uuid

try:
    import paho.mqtt
    import paho.mqtt.client as mqtt
except ImportError:  # pragma: no cover - reported by the caller
    print(
        "FAIL: python module paho-mqtt is not installed "
        "(apt-get install python3-paho-mqtt, or python3 -m pip install paho-mqtt)",
        file=sys.stderr,
    )
    sys.exit(2)

PAHO_V2 = hasattr(mqtt, "CallbackAPIVersion")
PROTOCOLS = {"31": mqtt.MQTTv31, "311": mqtt.MQTTv311, "5": mqtt.MQTTv5}
TIMEOUT = 5.0
# How long to watch for something that must NOT arrive (delivery on loopback takes well under 1 ms).
ABSENCE_WAIT = 0.5


class Failure(Exception):
    pass


def fail(msg):
    raise Failure(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def parse_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="311")
    return p.parse_args()


def run(description, body):
    """Parses the arguments and runs body(args), mapping failures to exit status 1."""
    args = parse_args(description)
    name = os.path.basename(sys.argv[0])
    signal.signal(signal.SIGALRM, lambda *_: (print(f"FAIL: {name} timed out", file=sys.stderr), os._exit(1)))
    signal.alarm(60)
    try:
        body(args)
    except Failure as e:
        print(f"FAIL: {name} (MQTT {args.protocol}): {e}", file=sys.stderr)
        sys.exit(1)
    print(f"OK {name} (MQTT {args.protocol}, paho-mqtt {getattr(paho.mqtt, '__version__', '?')})")


def unique(role):
    """A client id or topic part unique to this run, at most 23 bytes (the MQTT 3.1 limit)."""
    return f"{role[:8]}-{uuid.uuid4().hex[:12]}"


def _code(c):
    return int(getattr(c, "value", c))


class Client:
    """A paho client with loop_start() and blocking helpers: subscribe, publish, recv."""

    def __init__(self, args, client_id, clean=True, persistent=False, will=None, keepalive=30):
        self.args = args
        self.id = client_id
        self.proto = PROTOCOLS[args.protocol]
        self.v5 = self.proto == mqtt.MQTTv5
        kwargs = dict(client_id=client_id, protocol=self.proto)
        if not self.v5:
            kwargs["clean_session"] = clean and not persistent
        if PAHO_V2:
            self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        else:
            self.c = mqtt.Client(**kwargs)
        self.messages = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connack = None
        self.subacks = {}
        self.cond = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda client, userdata, msg: self.messages.put(msg)
        self.c.on_subscribe = self._on_subscribe
        self.c.on_disconnect = lambda *a: self.disconnected.set()
        if will is not None:
            topic, payload, qos, retain = will
            self.c.will_set(topic, payload, qos, retain)
        if self.v5:
            from paho.mqtt.properties import Properties
            from paho.mqtt.packettypes import PacketTypes

            props = Properties(PacketTypes.CONNECT)
            if persistent:
                props.SessionExpiryInterval = 3600
            self.c.connect(args.host, args.port, keepalive, clean_start=clean and not persistent, properties=props)
        else:
            self.c.connect(args.host, args.port, keepalive)
        self.c.loop_start()
        if not self.connected.wait(TIMEOUT):
            fail(f"{client_id}: no CONNACK within {TIMEOUT}s")
        flags, rc = self.connack
        check(_code(rc) == 0, f"{client_id}: connection refused, reason {rc}")
        # MQTT 3.1's CONNACK has no Session Present flag (the byte is reserved), so it reads as 0.
        self.session_present = bool(flags.session_present if hasattr(flags, "session_present") else flags.get("session present"))

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        self.connack = (flags, rc)
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, codes, properties=None):
        with self.cond:
            self.subacks[mid] = [_code(c) for c in codes]
            self.cond.notify_all()

    def subscribe(self, topic, qos):
        """Subscribes and waits for the SUBACK; returns the granted QoS."""
        rc, mid = self.c.subscribe(topic, qos)
        check(rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe {topic}: {rc}")
        with self.cond:
            if not self.cond.wait_for(lambda: mid in self.subacks, TIMEOUT):
                fail(f"{self.id}: no SUBACK for {topic}")
            return self.subacks[mid][0]

    def publish(self, topic, payload, qos=0, retain=False):
        """Publishes and waits until sent (QoS 0) or acknowledged (QoS 1 PUBACK, QoS 2 PUBCOMP)."""
        info = self.c.publish(topic, payload, qos, retain)
        info.wait_for_publish(TIMEOUT)
        check(info.is_published(), f"{self.id}: publish to {topic} not completed within {TIMEOUT}s")

    def recv(self, timeout=TIMEOUT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            fail(f"{self.id}: no message within {timeout}s")

    def expect_nothing(self, timeout=ABSENCE_WAIT):
        """Asserts no message arrives for `timeout` (only where there is no later event to wait for)."""
        try:
            m = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        fail(f"{self.id}: unexpected message on {m.topic}: {m.payload!r}")

    def disconnect(self):
        """Sends DISCONNECT and waits for paho to close the connection."""
        self.c.disconnect()
        self.disconnected.wait(TIMEOUT)
        self.c.loop_stop()

    def kill(self):
        """Drops the TCP connection without DISCONNECT (an abnormal close: the broker publishes the will)."""
        self.c.loop_stop()
        sock = self.c.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
