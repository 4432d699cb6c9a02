#!/usr/bin/env python3
"""An independent verifier of Custodia's hash chains, written from
docs/event-format.md alone (standard library only; SQLite databases), with
each chain's RFC 9162 Merkle root (docs/audit-format.md).

    python3 docs/verify_chain.py custodia.db

Prints one line per chain and exits 0 when every chain is intact, 1 otherwise.
"""
import hashlib
import sqlite3
import struct
import sys
import uuid

GENESIS = bytes(32)
COLUMNS = ("position, chain_id, chain_index, prev_hash, event_id, stream_category, stream_id, "
           "stream_version, event_type, schema_version, recorded_at, actor, command_id, "
           "correlation_id, causation_id, origin, payload, hash")


def canonical_bytes(e):
    fields = [
        b"custodia.event.v1",
        e["chain_id"],
        struct.pack(">Q", e["chain_index"]),
        e["prev_hash"],
        e["event_id"],
        e["stream_category"].encode(),
        e["stream_id"],
        struct.pack(">Q", e["stream_version"]),
        e["event_type"].encode(),
        struct.pack(">I", e["schema_version"]),
        struct.pack(">q", e["recorded_at"]),
        e["actor"].encode(),
        e["command_id"],
        e["correlation_id"],
        e["causation_id"] or b"",
        e["origin"].encode(),
        e["payload"],
    ]
    return b"".join(struct.pack(">I", len(f)) + f for f in fields)


def first_break(events):
    """The (position, chain index, kind) of the first broken link, or None."""
    prev_hash, expected, prev_position = GENESIS, 0, None
    for i, e in enumerate(events):
        nxt = events[i + 1] if i + 1 < len(events) else None
        where = (e["position"], e["chain_index"])
        if e["chain_index"] > expected:
            return where + ("missing predecessor",)
        if e["chain_index"] < expected:
            return where + ("forged",)
        if (prev_position is not None and e["position"] <= prev_position) or (
                nxt is not None and nxt["position"] <= e["position"]):
            return where + ("reordered",)
        if hashlib.sha256(canonical_bytes(e)).digest() != e["hash"]:
            return where + ("altered content",)
        if e["prev_hash"] != prev_hash:
            return where + ("forged",)
        prev_hash, expected, prev_position = e["hash"], expected + 1, e["position"]
    return None


def merkle_root(leaves):
    """RFC 9162 §2.1.1: the root of a list of leaf inputs (here each
    event's hash), with leaf = SHA-256(0x00 || d), node = SHA-256(0x01 ||
    left || right), the empty tree SHA-256("")."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + merkle_root(leaves[:k]) + merkle_root(leaves[k:])).digest()


def main(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    chains = [r[0] for r in db.execute("SELECT DISTINCT chain_id FROM events ORDER BY chain_id")]
    intact = True
    for chain in chains:
        events = [dict(r) for r in db.execute(
            f"SELECT {COLUMNS} FROM events WHERE chain_id = ? ORDER BY chain_index", (chain,))]
        name = "platform" if chain == bytes(16) else f"tenant {uuid.UUID(bytes=chain)}"
        broken = first_break(events)
        if broken:
            intact = False
            print(f"{name}: BROKEN at position {broken[0]} (chain index {broken[1]}): {broken[2]}")
        else:
            root = merkle_root([e["hash"] for e in events]).hex()
            print(f"{name}: intact, {len(events)} events, merkle root {root}")
    return 0 if intact else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
