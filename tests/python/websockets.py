#!/usr/bin/env python3
"""paho-mqtt's websocket transport (transport="websockets", path /mqtt): subscribe, then publish at
QoS 0, 1 and 2, one payload of 100 KB (several WebSocket frames' worth); with a CA file, over wss://.
Usage: websockets.py HOST PORT [CAFILE]"""

import queue
import sys
import threading
import uuid

import paho.mqtt.client as mqtt

TIMEOUT = 10
PAHO_V2 = hasattr(mqtt, "CallbackAPIVersion")


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def client(host, port, cafile, role):
    cid = f"ws-{role}-{uuid.uuid4().hex[:8]}"
    if PAHO_V2:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, transport="websockets")
    else:
        c = mqtt.Client(client_id=cid, transport="websockets")
    c.ws_set_options(path="/mqtt")
    if cafile:
        c.tls_set(ca_certs=cafile)
    connected, subscribed, messages = threading.Event(), threading.Event(), queue.Queue()
    c.on_connect = lambda *a: connected.set()
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_message = lambda client, userdata, msg: messages.put(msg)
    c.connect(host, port, 30)
    c.loop_start()
    if not connected.wait(TIMEOUT):
        fail(f"{role}: no CONNACK over websockets within {TIMEOUT}s")
    return c, subscribed, messages


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    cafile = sys.argv[3] if len(sys.argv) > 3 else None
    topic = f"ws/{uuid.uuid4().hex[:8]}"
    sub, subscribed, messages = client(host, port, cafile, "sub")
    sub.subscribe(topic + "/#", 2)
    if not subscribed.wait(TIMEOUT):
        fail("no SUBACK over websockets")
    pub, _, _ = client(host, port, cafile, "pub")
    for qos, payload in ((0, b"zero"), (1, b"one"), (2, bytes(range(256)) * 400)):
        pub.publish(f"{topic}/{qos}", payload, qos=qos).wait_for_publish(TIMEOUT)
        try:
            m = messages.get(timeout=TIMEOUT)
        except queue.Empty:
            fail(f"no message at QoS {qos} over websockets")
        if (m.topic, m.payload, m.qos) != (f"{topic}/{qos}", payload, qos):
            fail(f"QoS {qos}: got {m.topic} ({len(m.payload)} bytes) at QoS {m.qos}")
    for c in (sub, pub):
        c.disconnect()
        c.loop_stop()
    print("websockets.py: ok")


main()
