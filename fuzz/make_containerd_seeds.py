#!/usr/bin/env python3
"""Writes the seed corpus of the containerd_requests fuzz target (run from fuzz/; output is
committed). A seed is one byte naming the method (its index in
refeng::containerd::requests::METHODS) and the protobuf body of that method's request,
well-formed and broken: ids, refs, digests, labels, filters, field paths, mounts and specs."""
import json, os

def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])

def field(num, value):
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint((num << 3) | 2) + varint(len(value)) + value

def msg(*fields):
    return b"".join(field(n, v) for n, v in fields)

def mapentry(num, k, v):
    return field(num, msg((1, k), (2, v)))

SPEC_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
spec = json.dumps({"ociVersion": "1.0.2", "root": {"path": "rootfs"},
                   "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}},
                   "linux": {}})
D = "sha256:" + "ab" * 32

def any_(url, value):
    return msg((1, url), (2, value))

def container(cid, runtime="io.containerd.runc.v2", spec_any=None, extra=b""):
    fs = [(1, cid), (3, "docker.io/library/busybox:latest")]
    body = msg(*fs)
    if runtime is not None:
        body += field(4, msg((1, runtime)))
    if spec_any is not None:
        body += field(5, spec_any)
    return body + extra

seeds = {
    "containers_create_ok": (0, field(1, container("c1", spec_any=any_(SPEC_URL, spec)))),
    "containers_create_bad_id": (0, field(1, container("c/../1", spec_any=any_(SPEC_URL, spec)))),
    "containers_create_no_runtime": (0, field(1, container("c1", runtime=None, spec_any=any_(SPEC_URL, spec)))),
    "containers_create_spec_other_type": (0, field(1, container("c1", spec_any=any_("x.y/Z", "{}")))),
    "containers_create_spec_not_json": (0, field(1, container("c1", spec_any=any_(SPEC_URL, "{\"ociVersion\":")))),
    "containers_create_labels": (0, field(1, container("c1", spec_any=any_(SPEC_URL, spec),
                                                        extra=mapentry(2, "a", "b")))),
    "containers_update_paths": (1, field(1, container("c1", spec_any=any_(SPEC_URL, spec)))
                                + field(2, msg((1, "labels.a"), (1, "image")))),
    "containers_update_runtime": (1, field(1, container("c1", spec_any=any_(SPEC_URL, spec)))
                                  + field(2, msg((1, "runtime")))),
    "containers_list_filters": (2, msg((1, "labels.\"a.b\"==c,id~=^x"), (1, "image==\"busybox\""))),
    "containers_list_bad_filter": (2, msg((1, "id=="), (1, "a.\"b"))),
    "images_create_ok": (3, field(1, msg((1, "docker.io/library/busybox:latest"),
                                         (3, msg((1, "application/vnd.oci.image.manifest.v1+json"), (2, D), (3, 400)))))),
    "images_create_bad_digest": (3, field(1, msg((1, "x"), (3, msg((1, "m"), (2, "sha256:zz"), (3, 1)))))),
    "images_list_filters": (4, msg((1, "name~=busybox,target.mediatype==x"), (1, "labels.k"))),
    "content_info_ok": (5, msg((1, D))),
    "content_info_malformed": (5, msg((1, "sha512:abc"))),
    "content_write_ok": (6, msg((1, 1), (2, "ref-1"), (3, 10), (4, D), (5, 0), (6, "0123456789"))),
    "content_write_no_ref": (6, msg((1, 0))),
    "content_write_bad_action": (6, msg((1, 7), (2, "r"))),
    "snapshots_prepare_ok": (7, msg((1, "overlayfs"), (2, "extract-1 " + D), (3, D))),
    "snapshots_prepare_empty_key": (7, msg((1, "overlayfs"))),
    "diff_apply_overlay": (8, field(1, msg((1, "application/vnd.oci.image.layer.v1.tar+gzip"), (2, D), (3, 5)))
                           + field(2, msg((1, "overlay"), (2, "overlay"), (4, "lowerdir=/a:/b"), (4, "upperdir=/u"), (4, "workdir=/w")))),
    "diff_apply_bind": (8, field(1, msg((1, "application/vnd.oci.image.layer.v1.tar"), (2, D), (3, 5)))
                        + field(2, msg((1, "bind"), (2, "/x"), (4, "rbind"), (4, "rw")))),
    "diff_apply_two_mounts": (8, field(1, msg((2, D))) + field(2, msg((1, "bind"))) + field(2, msg((1, "bind")))),
    "leases_create_ok": (9, msg((1, "123-AbC-")) + mapentry(3, "containerd.io/gc.expire", "2030-01-01T00:00:00Z")),
    "leases_add_resource_content": (10, msg((1, "l1")) + field(2, msg((1, D), (2, "content")))),
    "leases_add_resource_bad": (10, msg((1, "l1")) + field(2, msg((1, "x"), (2, "snapshots/")))),
    "events_publish_ok": (11, msg((1, "/tasks/exit")) + field(2, any_("containerd.events.TaskExit", ""))),
    "events_publish_bad_topic": (11, msg((1, "tasks//exit"))),
    "events_subscribe_filters": (12, msg((1, "topic==\"/tasks/exit\",namespace==default"), (1, "topic~=|^/a|"))),
    "namespaces_create_ok": (13, field(1, msg((1, "k8s.io")) + mapentry(2, "a", "b"))),
    "namespaces_create_bad": (13, field(1, msg((1, "-x-")))),
    "namespaces_update_paths": (14, field(1, msg((1, "n1")) + mapentry(2, "a", "b"))
                                + field(2, msg((1, "labels.a"), (1, "labels")))),
    "garbage": (0, b"\xff\xff\xff\xff\x0f"),
    "truncated": (3, b"\x0a\x20\x0a"),
}

out = os.path.join("corpus", "containerd_requests")
os.makedirs(out, exist_ok=True)
for name, (method, body) in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([method]) + body)
print(f"wrote {len(seeds)} seeds to {out}")
