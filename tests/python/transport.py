#!/usr/bin/env python3
"""paho-mqtt over TLS and/or WebSockets: one client subscribes, another publishes at QoS 0, 1 and 2
(the last a 100 KB payload, several WebSocket frames' worth), and each message arrives intact.
With --cafile the server certificate is checked against it and the host name; --cert/--key present
a client certificate; --websockets uses paho's websocket transport (path /mqtt).
Usage: transport.py HOST PORT [--websockets] [--cafile FILE [--cert FILE --key FILE]]"""

import argparse
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


def client(args, role):
    cid = f"tr-{role}-{uuid.uuid4().hex[:8]}"
    transport = "websockets" if args.websockets else "tcp"
    if PAHO_V2:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, transport=transport)
    else:
        c = mqtt.Client(client_id=cid, transport=transport)
    if args.websockets:
        c.ws_set_options(path="/mqtt")
    if args.cafile:
        c.tls_set(ca_certs=args.cafile, certfile=args.cert, keyfile=args.key, cert_reqs=ssl.CERT_REQUIRED)
    connected, subscribed, messages = threading.Event(), threading.Event(), queue.Queue()
    c.on_connect = lambda *a: connected.set()
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = lambda client, userdata, msg: messages.put(msg)
    c.connect(args.host, args.port, 30)
    c.loop_start()
    if not connected.wait(TIMEOUT):
        fail(f"{role}: no CONNACK within {TIMEOUT}s")
    return c, subscribed, messages


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--websockets", action="store_true")
    parser.add_argument("--cafile")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    topic = f"tr/{uuid.uuid4().hex[:8]}"
    sub, subscribed, messages = client(args, "sub")
    sub.subscribe(topic + "/#", 2)
    if not subscribed.wait(TIMEOUT):
        fail("no SUBACK")
    pub, _, _ = client(args, "pub")
    for qos, payload in ((0, b"zero"), (1, b"one"), (2, bytes(range(256)) * 400)):
        pub.publish(f"{topic}/{qos}", payload, qos=qos).wait_for_publish(TIMEOUT)
        try:
            m = messages.get(timeout=TIMEOUT)
        except queue.Empty:
            fail(f"no message at QoS {qos}")
        if (m.topic, m.payload, m.qos) != (f"{topic}/{qos}", payload, qos):
            fail(f"QoS {qos}: got {m.topic} ({len(m.payload)} bytes) at QoS {m.qos}")
    for c in (sub, pub):
        c.disconnect()
        c.loop_stop()
    print("transport.py: ok")


main()
