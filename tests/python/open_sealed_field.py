#!/usr/bin/env python3
"""Opens one Custodia sealed field with the `cryptography` package, written
from docs/adr/0004-personal-data-keys.md alone.

    open_sealed_field.py DB MASTER_KEY_B64 TENANT STREAM_CATEGORY STREAM_ID EVENT_ID FIELD SUBJECT NONCE_B64 CIPHERTEXT_B64

Prints the plaintext (UTF-8) on stdout.
"""
import base64
import sqlite3
import struct
import sys
import uuid

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def b64(text):
    return base64.b64decode(text + "=" * (-len(text) % 4))


def unwrap(kek, wrapped, aad):
    return AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], aad)


def main(db, master, tenant, category, stream_id, event_id, field, subject, nonce, ciphertext):
    tenant_b, subject_b = uuid.UUID(tenant).bytes, uuid.UUID(subject).bytes
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    (wrapped_tenant,) = conn.execute("SELECT wrapped FROM tenant_keys WHERE tenant_id = ?", (tenant_b,)).fetchone()
    (wrapped_subject,) = conn.execute(
        "SELECT wrapped FROM subject_keys WHERE tenant_id = ? AND subject_id = ?", (tenant_b, subject_b)).fetchone()
    tenant_key = unwrap(b64(master), wrapped_tenant, b"custodia.tenant-key.v1" + tenant_b)
    subject_key = unwrap(tenant_key, wrapped_subject, b"custodia.subject-key.v1" + tenant_b + subject_b)
    parts = [b"custodia.field.v1", tenant_b, category.encode(), uuid.UUID(stream_id).bytes,
             uuid.UUID(event_id).bytes, field.encode()]
    aad = b"".join(struct.pack(">I", len(p)) + p for p in parts)
    print(AESGCM(subject_key).decrypt(b64(nonce), b64(ciphertext), aad).decode(), end="")


if __name__ == "__main__":
    main(*sys.argv[1:])
