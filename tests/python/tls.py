#!/usr/bin/env python3
"""paho-mqtt over TLS with a client certificate: the server certificate is checked against the CA and
the host name (127.0.0.1 is in its subject alternative names); one client subscribes, another
publishes at QoS 1, the message arrives. Usage: tls.py HOST PORT CAFILE CERTFILE KEYFILE"""

import queue
import ssl
import sys
import threading
import uuid

import paho.mqtt.client as mqtt

TIMEOUT = 10
PAHO_V2 = hasattr(mqtt, "CallbackAPIVersion")


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def client(host, port, ca, cert, key, role):
    cid = f"tls-{role}-{uuid.uuid4().hex[:8]}"
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid) if PAHO_V2 else mqtt.Client(client_id=cid)
    c.tls_set(ca_certs=ca, certfile=cert, keyfile=key, cert_reqs=ssl.CERT_REQUIRED)
    connected = threading.Event()
    subscribed = threading.Event()
    messages = queue.Queue()
    c.on_connect = lambda *a: connected.set()
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = lambda client, userdata, msg: messages.put(msg)
    c.connect(host, port, 30)
    c.loop_start()
    if not connected.wait(TIMEOUT):
        fail(f"{role}: no CONNACK over TLS within {TIMEOUT}s")
    return c, subscribed, messages


def main():
    host, port, ca, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    topic = f"tls/{uuid.uuid4().hex[:8]}"
    sub, subscribed, messages = client(host, port, ca, cert, key, "sub")
    sub.subscribe(topic, 1)
    if not subscribed.wait(TIMEOUT):
        fail("no SUBACK over TLS")
    pub, _, _ = client(host, port, ca, cert, key, "pub")
    pub.publish(topic, b"over tls", qos=1).wait_for_publish(TIMEOUT)
    try:
        m = messages.get(timeout=TIMEOUT)
    except queue.Empty:
        fail("no message over TLS")
    if (m.topic, m.payload, m.qos) != (topic, b"over tls", 1):
        fail(f"got {m.topic} {m.payload!r} at QoS {m.qos}")
    for c in (sub, pub):
        c.disconnect()
        c.loop_stop()
    print("tls.py: ok")


main()
