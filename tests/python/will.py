#!/usr/bin/env python3
"""paho-mqtt will messages: published when the connection drops without DISCONNECT [MQTT-3.1.2-8], not
after DISCONNECT [MQTT-3.1.2-10], stored when Will Retain is 1 [MQTT-3.1.2-17].
Usage: will.py HOST PORT [--protocol 31|311|5]"""

from mqtt_common import Client, check, run, unique


def body(args):
    base = f"pywill/{unique('w')}"
    sub = Client(args, unique("sub"))
    check(sub.subscribe(f"{base}/#", 1) == 1, "granted")

    w = Client(args, unique("dies"), will=(f"{base}/dies", b"died", 1, False))
    w.kill()
    m = sub.recv()
    check((m.topic, m.payload, m.qos, m.retain) == (f"{base}/dies", b"died", 1, False), f"will: {m.topic} {m.payload!r}")

    polite = Client(args, unique("polite"), will=(f"{base}/polite", b"must not", 1, False))
    polite.disconnect()
    sub.expect_nothing()  # the will would have been published at the close that already happened

    r = Client(args, unique("retw"), will=(f"{base}/retained", b"offline", 1, True))
    r.kill()
    m = sub.recv()
    check((m.topic, m.payload) == (f"{base}/retained", b"offline"), f"retained will, live: {m.topic} {m.payload!r}")
    late = Client(args, unique("late"))
    check(late.subscribe(f"{base}/retained", 1) == 1, "granted")
    m = late.recv()
    check((m.payload, m.retain) == (b"offline", True), f"retained will stored: {m.payload!r} retain={m.retain}")
    late.publish(f"{base}/retained", b"", 1, retain=True)  # clean up

    for c in (sub, late):
        c.disconnect()


if __name__ == "__main__":
    run(__doc__, body)
