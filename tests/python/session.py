#!/usr/bin/env python3
"""paho-mqtt persistent sessions: with clean session 0 (5.0: clean start 0 and a session expiry interval)
subscriptions survive a disconnect, QoS 1/2 messages are queued while away and delivered on reconnect,
and CONNACK says Session Present 1 [MQTT-3.2.2-2]; a clean connect discards it [MQTT-3.1.2-6].
Usage: session.py HOST PORT [--protocol 31|311|5]"""

from mqtt_common import Client, check, run, unique


def body(args):
    base = f"pysess/{unique('s')}"
    cid = unique("sess")
    p = Client(args, cid, persistent=True)
    check(not p.session_present, "first connect: no session present")
    check(p.subscribe(f"{base}/q1", 1) == 1, "granted 1")
    check(p.subscribe(f"{base}/q2", 2) == 2, "granted 2")
    p.disconnect()

    pub = Client(args, unique("pub"))
    pub.publish(f"{base}/q1", b"away 1", 1)
    pub.publish(f"{base}/q2", b"away 2", 2)

    p = Client(args, cid, persistent=True)
    v31 = args.protocol == "31"  # MQTT 3.1 has no Session Present flag
    check(v31 or p.session_present, "reconnect: Session Present 1")
    got = sorted((m.topic, m.payload, m.qos) for m in (p.recv(), p.recv()))
    want = [(f"{base}/q1", b"away 1", 1), (f"{base}/q2", b"away 2", 2)]
    check(got == want, f"queued while away: got {got}")
    pub.publish(f"{base}/q1", b"live", 1)
    check(p.recv().payload == b"live", "subscription kept")
    p.disconnect()

    clean = Client(args, cid, clean=True)
    check(not clean.session_present, "clean connect: Session Present 0")
    clean.disconnect()
    p = Client(args, cid, persistent=True)
    check(not p.session_present, "the clean connect discarded the session")
    # ... and its subscriptions: nothing arrives (marker from the same publisher closes the window).
    check(p.subscribe(f"{base}/marker", 1) == 1, "granted")
    pub.publish(f"{base}/q1", b"old subscription", 1)
    pub.publish(f"{base}/marker", b"marker", 1)
    m = p.recv()
    check(m.topic == f"{base}/marker", f"discarded subscription delivered {m.topic} {m.payload!r}")
    p.disconnect()

    pub.disconnect()


if __name__ == "__main__":
    run(__doc__, body)
