#!/usr/bin/env python3
"""An independent verifier of Custodia's audit exports and proof files,
written from docs/audit-format.md and docs/event-format.md alone (the
standard library, and `cryptography` for Ed25519).

    python3 docs/verify_export.py DIR_OR_PROOF_FILE VERIFIER_KEY [MORE_KEYS…]

Prints VERIFIED and exits 0, or NOT VERIFIED and the reason and exits 1.
"""
import base64
import hashlib
import json
import os
import struct
import sys
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Refused(Exception):
    pass


def sha256(data):
    return hashlib.sha256(data).digest()


def leaf(data):
    return sha256(b"\x00" + data)


def node(left, right):
    return sha256(b"\x01" + left + right)


# Signed notes (C2SP signed-note) and checkpoints (C2SP tlog-checkpoint).

def parse_key(text):
    name, key_id, key = text.strip().split("+", 2)
    raw = base64.b64decode(key)
    if raw[0] != 1 or len(raw) != 33:
        raise Refused("the key is not an Ed25519 verifier key")
    if sha256(name.encode() + b"\n" + raw)[:4] != bytes.fromhex(key_id):
        raise Refused("the key's id does not match it")
    return name, bytes.fromhex(key_id), Ed25519PublicKey.from_public_bytes(raw[1:])


def open_checkpoint(note, keys):
    """The (origin, size, root) of a checkpoint one of the keys signed; its
    origin must be <the signing key's name>/<chain>."""
    text, sep, signatures = note.rpartition("\n\n")
    if not sep or not signatures.endswith("\n"):
        raise Refused("not a signed note")
    text += "\n"
    signed_by = set()
    for line in signatures[:-1].split("\n"):
        if not line.startswith("\u2014 ") or line.count(" ") != 2:
            raise Refused("a malformed signature line")
        signer, signature = line[2:].split(" ", 1)
        signature = base64.b64decode(signature, validate=True)
        for name, key_id, public in keys:
            if signer == name and signature[:4] == key_id:
                try:
                    public.verify(signature[4:], text.encode())
                except Exception:
                    raise Refused("the signature does not verify (changed after signing)")
                signed_by.add(name)
    if not signed_by:
        raise Refused("no signature by a trusted key")
    origin, size, root = text.split("\n")[:3]
    if origin.rsplit("/", 1)[0] not in signed_by or int(size) <= 0 or str(int(size)) != size:
        raise Refused("not a checkpoint of the signing key's log, or of an empty tree")
    return origin, int(size), base64.b64decode(root, validate=True)


def hash_hex(text):
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise Refused("a hash is not 64 lower-case hex digits")
    return bytes.fromhex(text)


# Events (docs/event-format.md).

FIELDS = {
    "chain_index": int, "position": int, "prev_hash": str, "hash": str, "event_id": str,
    "stream_category": str, "stream_id": str, "stream_version": int, "event_type": str,
    "schema_version": int, "recorded_at": int, "actor": str, "command_id": str,
    "correlation_id": str, "causation_id": (str, type(None)), "origin": str, "payload": str,
}


def no_duplicates(pairs):
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise Refused("a duplicate key")
    return dict(pairs)


def event_of(text):
    """An event line: exactly the documented fields, each of its type."""
    e = json.loads(text, object_pairs_hook=no_duplicates)
    if set(e) != set(FIELDS) or any(
            type(e[k]) is bool or not isinstance(e[k], t) for k, t in FIELDS.items()):
        raise Refused("not an exported event line")
    return e


def event_hash(e, chain_id):
    def u(name):
        return uuid.UUID(hex=e[name]).bytes
    fields = [
        b"custodia.event.v1", chain_id, struct.pack(">Q", e["chain_index"]),
        hash_hex(e["prev_hash"]), u("event_id"), e["stream_category"].encode(),
        u("stream_id"), struct.pack(">Q", e["stream_version"]), e["event_type"].encode(),
        struct.pack(">I", e["schema_version"]), struct.pack(">q", e["recorded_at"]),
        e["actor"].encode(), u("command_id"), u("correlation_id"),
        b"" if e["causation_id"] is None else u("causation_id"),
        e["origin"].encode(), base64.b64decode(e["payload"], validate=True),
    ]
    return sha256(b"".join(struct.pack(">I", len(f)) + f for f in fields))


def chain_id_of(origin):
    last = origin.rsplit("/", 1)[1]
    return bytes(16) if last == "platform" else uuid.UUID(last).bytes


# RFC 9162 proofs.

def root_of_frontier(size, hashes):
    """The root of a tree given its perfect subtrees, largest first."""
    if not hashes:
        return sha256(b"")
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = node(left, acc)
    return acc


def push(size, hashes, leaf_hash):
    h = leaf_hash
    while size & 1:
        h = node(hashes.pop(), h)
        size >>= 1
    hashes.append(h)


def verify_inclusion(index, size, leaf_hash, proof, root):
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162 §2.1.4.2."""
    if first == second:
        return not proof and first_root == second_root
    if first == 0 or first > second or not proof:
        return False
    if first & (first - 1) == 0:
        proof = [first_root] + proof
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


# An export directory.

def verify_export(directory, keys):
    def read(name):
        with open(os.path.join(directory, name), "rb") as f:
            return f.read()
    manifest = json.loads(read("manifest.json"))
    if manifest["format"] != "custodia.audit-export.v1":
        raise Refused("not an export of this format")
    listed = {f["name"]: f for f in manifest["files"]}
    files = {}
    for name in ("events.jsonl", "checkpoints.jsonl", "proofs.json"):
        data = read(name)
        entry = listed.get(name)
        if not entry or entry["sha256"] != hashlib.sha256(data).hexdigest() or entry["bytes"] != len(data):
            raise Refused(name + " does not match the manifest")
        files[name] = data
    origin = manifest["origin"]
    chain_id = chain_id_of(origin)
    if uuid.UUID(manifest["tenant"]).bytes != chain_id:
        raise Refused("the origin does not name the tenant")
    checkpoints = []
    for line in files["checkpoints.jsonl"].decode().splitlines():
        if not line.strip():
            continue
        cp = open_checkpoint(json.loads(line)["checkpoint"], keys)
        if chain_id_of(cp[0]) != chain_id or (checkpoints and cp[1] <= checkpoints[-1][1]):
            raise Refused("a checkpoint of another chain, or out of order")
        checkpoints.append(cp)
    _, size, root = checkpoints[-1]
    if size != manifest["tree_size"]:
        raise Refused("the last checkpoint is not of the manifest's size")
    proofs = json.loads(files["proofs.json"])
    first = manifest["first_index"]
    hashes = [hash_hex(h) for h in proofs["frontier"]]
    if len(hashes) != bin(first).count("1"):
        raise Refused("the frontier does not match the first index")
    previous, expected, count, position = hash_hex(proofs["previous_hash"]), first, 0, None
    for line in files["events.jsonl"].decode().splitlines():
        if not line.strip():
            continue
        e = event_of(line)
        if e["chain_index"] != expected:
            raise Refused("chain index %d where %d was expected" % (e["chain_index"], expected))
        if position is not None and e["position"] <= position:
            raise Refused("positions out of order at chain index %d" % expected)
        h = hash_hex(e["hash"])
        if event_hash(e, chain_id) != h:
            raise Refused("altered content at chain index %d" % expected)
        if hash_hex(e["prev_hash"]) != previous:
            raise Refused("forged link at chain index %d" % expected)
        push(expected, hashes, leaf(h))
        previous, expected, position, count = h, expected + 1, e["position"], count + 1
    if count != manifest["events"]:
        raise Refused("the export holds %d events, its manifest names %d" % (count, manifest["events"]))
    end = proofs["end"]
    if end["size"] != expected or expected > size:
        raise Refused("the proof is not for the events' end")
    ours = root_of_frontier(expected, hashes)
    if not verify_consistency(expected, size, ours, root, [hash_hex(p) for p in end["proof"]]):
        raise Refused("the events are not in the signed checkpoint")
    for earlier_origin, earlier_size, earlier_root in checkpoints[:-1]:
        proof = [p for p in proofs["checkpoints"] if p["size"] == earlier_size]
        if not proof or not verify_consistency(
                earlier_size, size, earlier_root, root, [hash_hex(p) for p in proof[0]["proof"]]):
            raise Refused("checkpoint of size %d is not consistent" % earlier_size)
    return "VERIFIED: %d events (chain indexes %d..%d) in the checkpoint of size %d" % (
        count, first, expected - 1, size)


def verify_proof_file(path, keys):
    with open(path, "rb") as f:
        head, _, note = f.read().decode().partition("\n\n")
    lines = head.split("\n")
    if lines[0] != "c2sp.org/tlog-proof@v1" or not lines[1].startswith("extra "):
        raise Refused("not a proof file with an event")
    e = event_of(base64.b64decode(lines[1][6:], validate=True))
    index = int(lines[2][len("index "):])
    proof = [base64.b64decode(p, validate=True) for p in lines[3:]]
    origin, size, root = open_checkpoint(note, keys)
    h = hash_hex(e["hash"])
    if event_hash(e, chain_id_of(origin)) != h or e["chain_index"] != index:
        raise Refused("the event is not the one proved")
    if not verify_inclusion(index, size, leaf(h), proof, root):
        raise Refused("the event is not in the signed checkpoint")
    return "VERIFIED: %s at chain index %d in the checkpoint of size %d" % (e["event_type"], index, size)


def main(path, key_texts):
    keys = [parse_key(text) for text in key_texts]
    try:
        if os.path.isdir(path):
            print(verify_export(path, keys))
        else:
            print(verify_proof_file(path, keys))
        return 0
    except (Refused, ValueError, KeyError, IndexError, TypeError) as why:
        print("NOT VERIFIED: %s" % why)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
