#!/usr/bin/env python3
"""Print every state change hintbus's broker publishes on its feed (docs/protocol.md).

    python3 examples/feed.py tcp://127.0.0.1:5561          # forever
    python3 examples/feed.py tcp://127.0.0.1:5561 10       # stop after 10 changes
    python3 examples/feed.py tcp://127.0.0.1:5561 0 device.a   # only server a's devices
"""
import json
import sys

import zmq


def main():
    endpoint = sys.argv[1] if len(sys.argv) > 1 else "tcp://127.0.0.1:5561"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    topic = sys.argv[3] if len(sys.argv) > 3 else ""  # "device.", "presence.b", ...
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.connect(endpoint)
    sub.setsockopt_string(zmq.SUBSCRIBE, topic)
    seen = 0
    while count == 0 or seen < count:
        topic_frame, body = sub.recv_multipart()
        e = json.loads(body)
        state = e["state"] if e["state"] is not None else "(removed)"
        extra = " ".join(x for x in (e.get("subtype", ""), e.get("message", "")) if x)
        print(f'{e["version"]:>8} {e["origin"]:<8} {e["kind"]:<8} {e["name"]:<28} {state} {extra}'.rstrip(), flush=True)
        seen += 1


if __name__ == "__main__":
    main()
