#!/usr/bin/env python3
"""paho-mqtt retained messages: stored and sent on subscribe with retain 1 [MQTT-3.3.1-6][MQTT-3.3.1-8],
live delivery with retain 0 [MQTT-3.3.1-9], replaced by a newer one, cleared by an empty payload
[MQTT-3.3.1-10]. Usage: retained.py HOST PORT [--protocol 31|311|5]"""

from mqtt_common import Client, check, run, unique


def body(args):
    base = f"pyret/{unique('r')}"
    pub = Client(args, unique("pub"))
    live = Client(args, unique("live"))
    check(live.subscribe(f"{base}/#", 1) == 1, "granted")

    pub.publish(f"{base}/a", b"first", 1, retain=True)
    pub.publish(f"{base}/a", b"second", 1, retain=True)
    for want in (b"first", b"second"):
        m = live.recv()
        check((m.payload, m.retain) == (want, False), f"live delivery: {m.payload!r} retain={m.retain}")

    late = Client(args, unique("late"))
    check(late.subscribe(f"{base}/a", 1) == 1, "granted")
    m = late.recv()
    check((m.payload, m.retain, m.qos) == (b"second", True, 1), f"retained: {m.payload!r} retain={m.retain} qos={m.qos}")
    late.expect_nothing()  # retained messages have no publisher order to put a marker behind

    pub.publish(f"{base}/a", b"", 1, retain=True)
    m = live.recv()
    check((m.payload, m.retain) == (b"", False), "the empty retained message is delivered live")
    later = Client(args, unique("later"))
    check(later.subscribe(f"{base}/a", 1) == 1, "granted")
    later.expect_nothing()  # cleared: nothing to send

    for c in (pub, live, late, later):
        c.disconnect()


if __name__ == "__main__":
    run(__doc__, body)
