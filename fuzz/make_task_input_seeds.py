#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/fuzz_targets/containerd_task_inputs.rs: the first byte picks
the input (refeng::containerd::tasks::input::INPUTS), the rest is its bytes. Protobuf is
encoded by hand here (strings, bools, varints, nested messages), so no generated code is needed.
Names ending in _ok must be accepted, names with "bad" refused."""
import json
import os

OUT = os.path.join(os.path.dirname(__file__), "corpus", "containerd_task_inputs")


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, value):
    if isinstance(value, bool):
        return varint(num << 3) + varint(int(value))
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


def any_(type_url, value):
    return field(1, type_url) + field(2, value)


PROCESS = "types.containerd.io/opencontainers/runtime-spec/1/Process"
proc_ok = json.dumps({"args": ["sh", "-c", "true"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                      "env": ["PATH=/bin"], "terminal": False}).encode()
mount = field(1, "overlay") + field(2, "overlay") + field(4, "lowerdir=/a") + field(4, "upperdir=/b")
record_ok = json.dumps({"runtime": "io.containerd.runc.v2", "shim_binary": "/usr/bin/containerd-shim-runc-v2",
                        "options": {"type_url": "containerd.runc.v1.Options", "value": "MgVydW5jYw=="},
                        "execs": ["e1"], "exits_published": [["", 42]]}).encode()
exit_msg = field(1, "c1") + field(2, "c1") + field(3, 42) + field(4, 137)
envelope_ok = field(2, "default") + field(3, "/tasks/exit") + field(4, any_("containerd.events.TaskExit", exit_msg))

seeds = {
    "create_ok": (0, field(1, "c1") + field(3, mount) + field(4, "/run/fifo/in") + field(7, True)),
    "create_bad_id": (0, field(1, "../c1")),
    "create_bad_checkpoint": (0, field(1, "c1") + field(8, field(2, "sha256:00"))),
    "create_bad_mount": (0, field(1, "c1") + field(3, field(4, "ro"))),
    "exec_ok": (1, field(1, "c1") + field(6, any_(PROCESS, proc_ok)) + field(7, "e1")),
    "exec_bad_no_spec": (1, field(1, "c1") + field(7, "e1")),
    "exec_bad_spec_json": (1, field(1, "c1") + field(6, any_(PROCESS, b"{\"args\":")) + field(7, "e1")),
    "exec_bad_no_args": (1, field(1, "c1") + field(6, any_(PROCESS, b"{\"cwd\":\"/\"}")) + field(7, "e1")),
    "exec_bad_type": (1, field(1, "c1") + field(6, any_("x.Other", proc_ok)) + field(7, "e1")),
    "exec_bad_exec_id": (1, field(1, "c1") + field(6, any_(PROCESS, proc_ok)) + field(7, "e 1")),
    "list_ok": (2, field(1, "id==c1")),
    "list_empty_ok": (2, b""),
    "list_bad_filter": (2, field(1, "id==")),
    "metrics_ok": (3, field(1, "id==c1") + field(1, "namespace==default")),
    "metrics_bad_filter": (3, field(1, "id~=(")),
    "kill_ok": (4, field(1, "c1") + field(3, 9)),
    "kill_bad_signal": (4, field(1, "c1") + field(3, 0)),
    "update_ok": (5, field(1, "c1")),
    "update_bad_id": (5, field(1, "")),
    "address_ok": (6, b"unix:///run/containerd/s/abc\n"),
    "address_json_ok": (6, b'{"version":3,"address":"unix:///s/x","protocol":"ttrpc"}'),
    "address_bad_empty": (6, b"\n"),
    "record_ok": (7, record_ok),
    "record_bad": (7, b"{\"runtime\": 5}"),
    "exit_event_ok": (8, envelope_ok),
    "exit_event_bad_topic": (8, field(3, "/tasks/start")),
    "garbage": (1, b"\xff\xff\xff\xff"),
}

os.makedirs(OUT, exist_ok=True)
for name, (which, body) in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([which]) + body)
