#!/usr/bin/env python3
"""Writes the seed corpora of the image_* fuzz targets (run from fuzz/; output is committed).

Layer seeds are the hostile layers of issue 5 plus well-formed ones; the image_layer target
reads its first byte as the whiteout mode, so each tar is written with a 0 and a 1 prefix."""
import gzip, hashlib, io, json, os, tarfile

def tar(members, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()

def ti(name, kind=tarfile.REGTYPE, data=b"", link="", **kw):
    i = tarfile.TarInfo(name)
    i.type = kind
    i.size = len(data) if kind == tarfile.REGTYPE else 0
    i.linkname = link
    for k, v in kw.items():
        setattr(i, k, v)
    return (i, data if kind == tarfile.REGTYPE else None)

def header(name, flag, size):
    b = bytearray(512)
    b[:len(name)] = name.encode()
    b[100:107] = b"0000644"
    b[124:135] = ("%011o" % size).encode()
    b[156] = ord(flag)
    b[257:263] = b"ustar\0"
    b[148:156] = b" " * 8
    b[148:155] = ("%06o\0" % sum(b)).encode()
    return bytes(b)

layers = {
    "valid": tar([ti("etc/", tarfile.DIRTYPE), ti("etc/passwd", data=b"root:x:0:0\n"), ti("bin/sh", tarfile.SYMTYPE, link="busybox"),
                  ti("etc/hard", tarfile.LNKTYPE, link="etc/passwd"), ti("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
                  ti("run/fifo", tarfile.FIFOTYPE), ti("bin/su", data=b"x", mode=0o4755, uid=1000, gid=1000)]),
    "whiteouts": tar([ti("a/.wh.gone"), ti("b/.wh..wh..opq"), ti("b/new", data=b"n"), ti(".wh.top")]),
    "dotdot": tar([ti("../evil", data=b"x"), ti("a/../../evil", data=b"x")]),
    "absolute": tar([ti("/etc/evil", data=b"x")]),
    "symlink_then_write": tar([ti("a", tarfile.SYMTYPE, link="/"), ti("a/evil", data=b"x")]),
    "symlink_dotdot_then_write": tar([ti("a", tarfile.SYMTYPE, link="../.."), ti("a/evil", data=b"x")]),
    "symlink_then_dir": tar([ti("d", tarfile.SYMTYPE, link="../"), ti("d", tarfile.DIRTYPE), ti("d/f", data=b"x")]),
    "hardlink_outside": tar([ti("h", tarfile.LNKTYPE, link="../../etc/passwd"), ti("h2", tarfile.LNKTYPE, link="/etc/passwd")]),
    "hardlink_to_symlink": tar([ti("s", tarfile.SYMTYPE, link="/etc/passwd"), ti("h", tarfile.LNKTYPE, link="s")]),
    "replace_root": tar([ti(".", tarfile.SYMTYPE, link="/"), ti("./", tarfile.SYMTYPE, link="..")]),
    "whiteout_escape": tar([ti("a/.wh..", data=b""), ti(".wh.", data=b""), ti(".wh...", data=b"")]),
    "uid_overflow": tar([ti("f", data=b"x", uid=2**32, gid=2**40)]),
    "dev_overflow": tar([ti("d", tarfile.BLKTYPE, devmajor=4096, devminor=2**20)], fmt=tarfile.GNU_FORMAT),
    "overlay_xattr": tar([(lambda i: (setattr(i[0], "pax_headers", {"SCHILY.xattr.trusted.overlay.opaque": "y"}), i)[1])(ti("d", tarfile.DIRTYPE))]),
    "pax_size_mismatch": header("PaxHeaders/f", "x", 13) + b"13 size=1024\n".ljust(512, b"\0") + header("f", "0", 1) + b"x".ljust(512, b"\0") + bytes(1024),
    # Cut inside the second header (an end inside the last padding is the end, as Go reads it).
    "truncated_header": tar([ti("a", data=b"abc"), ti("b", data=b"x")])[:1024 + 100],
    "long_pax_record": header("PaxHeaders/f", "x", 1 << 30) + bytes(512),
}
layers["gzip_bomb"] = gzip.compress(tar([ti("zeros", data=bytes(8 << 20))]), 9)

def write(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

for name, data in layers.items():
    write("image_tar", name, data)
    write("image_layer", name + "-overlay", b"\0" + data)
    write("image_layer", name + "-delete", b"\1" + data)

D = "sha256:" + hashlib.sha256(b"").hexdigest()
desc = lambda mt, size=2: {"mediaType": mt, "digest": D, "size": size}
docs = {
    "oci_manifest": {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                     "config": desc("application/vnd.oci.image.config.v1+json"), "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", 10)]},
    "docker_manifest": {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                        "config": desc("application/vnd.docker.container.image.v1+json"), "layers": [desc("application/vnd.docker.image.rootfs.diff.tar.gzip")]},
    "oci_index": {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        dict(desc("application/vnd.oci.image.manifest.v1+json"), platform={"os": "linux", "architecture": "amd64"}),
        dict(desc("application/vnd.oci.image.manifest.v1+json"), platform={"os": "linux", "architecture": "arm64", "variant": "v8"})]},
    "docker_list": {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json", "manifests": [
        dict(desc("application/vnd.docker.distribution.manifest.v2+json"), platform={"os": "linux", "architecture": "arm", "variant": "v7"})]},
    "schema1": {"schemaVersion": 1, "name": "x", "tag": "latest", "architecture": "amd64", "fsLayers": [{"blobSum": D}], "history": []},
    "bad_digest": {"schemaVersion": 2, "config": dict(desc("application/vnd.oci.image.config.v1+json"), digest="md5:00"), "layers": []},
}
for name, doc in docs.items():
    write("image_manifest", name, json.dumps(doc).encode())
configs = {
    "oci_config": {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
                   "rootfs": {"type": "layers", "diff_ids": [D]}, "history": [{"created_by": "x"}]},
    "bad_rootfs": {"architecture": "amd64", "os": "linux", "rootfs": {"type": "tarsum", "diff_ids": []}},
}
for name, doc in configs.items():
    # the target takes the layer count from the first byte ('{' % 8 == 3): a mismatch seed
    write("image_config", name, json.dumps(doc).encode())

layer = tar([ti("etc/base", data=b"base\n")], fmt=tarfile.USTAR_FORMAT)
diff = "sha256:" + hashlib.sha256(layer).hexdigest()
config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
chex = hashlib.sha256(config).hexdigest()
manifest = json.dumps([{"Config": chex + ".json", "RepoTags": ["seed:1"], "Layers": ["l1/layer.tar"]}]).encode()
write("image_docker_manifest", "manifest_json", manifest)
write("image_docker_manifest", "docker_save_old", tar([ti("l1/", tarfile.DIRTYPE), ti("l1/layer.tar", data=layer), ti(chex + ".json", data=config),
                                                      ti("l2/layer.tar", tarfile.SYMTYPE, link="../l1/layer.tar"),
                                                      ti("manifest.json", data=manifest), ti("repositories", data=b'{"seed":{"1":"l1"}}')], fmt=tarfile.USTAR_FORMAT))
write("image_docker_manifest", "escaping_symlink", tar([ti("l1/layer.tar", tarfile.SYMTYPE, link="../../../etc/passwd"), ti(chex + ".json", data=config),
                                                       ti("manifest.json", data=manifest)], fmt=tarfile.USTAR_FORMAT))
