"""A store program that breaks the wire protocol on purpose, at its first `start`:
`python tests/wire_faulty.py MODE`, MODE one of crash, hang, garbage, wrong-id (X1-X4),
both, neither, shape (X5: a reply with both or neither of result and error, a result of
the wrong shape). It answers `hello` and `reset` properly, so the kit gets as far as a
call; but in MODE hello-version its `hello` names another protocol version (X5 too)."""

import json
import sys
import time

mode = sys.argv[1]
for line in sys.stdin:
    msg = json.loads(line)
    op = msg["op"]
    # an empty store's answers, up to the fault
    empty = {"snapshot": [], "len": 0, "cleanup_workers_alive": 0}
    reply: dict[str, object] = {"id": msg["id"], "result": empty.get(op)}
    if op == "hello":
        reply["result"] = {"protocol": 2 if mode == "hello-version" else 1,
                           "capabilities": {}}
    elif op == "start":
        if mode == "crash":
            print("faulty: crashing on start", file=sys.stderr)
            sys.exit(3)
        if mode == "hang":
            time.sleep(3600)
        if mode == "garbage":
            sys.stdout.write("OK\n")
            sys.stdout.flush()
            continue
        if mode == "wrong-id":
            reply["id"] = msg["id"] + 1
        if mode == "both":
            reply["error"] = {"class": "UnknownRun", "run_id": "a", "state": "absent",
                              "rule": "V1"}
        if mode == "neither":
            del reply["result"]
        if mode == "shape":
            reply["result"] = 42  # a count where a run is due
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
