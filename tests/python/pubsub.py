#!/usr/bin/env python3
"""paho-mqtt publish/subscribe: QoS 0, 1, 2; delivery at min(published, granted) QoS [MQTT-3.8.4-6];
`+` and `#` filters (4.7.1). Usage: pubsub.py HOST PORT [--protocol 31|311|5]"""

from mqtt_common import Client, check, run, unique


def body(args):
    run_id = unique("ps")
    sub = Client(args, unique("sub"))
    pub = Client(args, unique("pub"))
    for qos in (0, 1, 2):
        topic = f"py/{run_id}/q{qos}"
        check(sub.subscribe(topic, qos) == qos, f"granted QoS for {topic}")
        pub.publish(topic, f"at {qos}".encode(), qos)
        m = sub.recv()
        check(m.topic == topic and m.payload == f"at {qos}".encode(), f"got {m.topic} {m.payload!r}")
        check(m.qos == qos, f"delivered at QoS {m.qos}, want {qos}")
        check(not m.retain, "live message has retain 0")

    # Published at QoS 2 to a QoS 0 subscription: delivered at QoS 0.
    low = f"py/{run_id}/low"
    check(sub.subscribe(low, 0) == 0, "granted QoS 0")
    pub.publish(low, b"downgraded", 2)
    m = sub.recv()
    check((m.topic, m.qos) == (low, 0), f"min QoS: got {m.topic} at {m.qos}")

    wild = Client(args, unique("wild"))
    check(wild.subscribe(f"py/{run_id}/+/x", 1) == 1, "granted")
    check(wild.subscribe(f"py/{run_id}/h/#", 1) == 1, "granted")
    for t in ("a/y", "a/x/z", "a/x", "h", "h/1/2"):
        pub.publish(f"py/{run_id}/{t}", t.encode(), 1)
    got = sorted(wild.recv().topic for _ in range(3))
    want = sorted(f"py/{run_id}/{t}" for t in ("a/x", "h", "h/1/2"))
    check(got == want, f"wildcards: got {got}, want {want}")
    # Same publisher, so the non-matching ones (published first) would have arrived by now.
    pub.publish(f"py/{run_id}/end/x", b"marker", 1)
    check(wild.recv().topic == f"py/{run_id}/end/x", "only matching topics delivered")

    for c in (sub, pub, wild):
        c.disconnect()


if __name__ == "__main__":
    run(__doc__, body)
