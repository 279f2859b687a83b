"""Patients' personal fields sealed: envelope encryption, crypto-shredding, a blind index.

Each patient has a data-encryption key of her own (:func:`new_data_key`, 256 bits) that seals
her personal fields with AES-256-GCM (:func:`seal`: a random 96-bit nonce per value; the
patient id and the field's name are the associated data, so a sealed value moved to another
patient's row or another field does not open). Her data key is kept only wrapped by a
key-encryption key (:class:`KeyWrapper`): a local key file in development
(``adapters.key_file``), a KMS in production. Deleting her wrapped key is crypto-shredding:
what was sealed under it can never be read again, wherever copies of the ciphertext are.

A blind index (:func:`blind_index`: HMAC-SHA256 of the normalised text under a key of its own)
lets a sealed field be looked up by equality without being opened.

Pure but for the randomness of keys and nonces: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import unicodedata
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kernel.errors import CareKnotError

KEY_BYTES = 32
"""AES-256: data keys and the local key-encryption key."""
NONCE_BYTES = 12
VERSION = b"\x01"
"""The first byte of a sealed value: its format (version, nonce, ciphertext and tag)."""
FORGOTTEN = "(forgotten)"
"""What a forgotten patient's sealed fields read as: her key is gone."""
UNREADABLE = "(sealed: cannot be opened)"
"""What a sealed field reads as when its key does not open it (tampered, another KEK)."""


class Unsealable(CareKnotError):
    """A sealed value or a wrapped key that does not open: tampered with, truncated, sealed
    for another patient or field, or wrapped by another key-encryption key."""


class KeyWrapper(Protocol):
    """A key-encryption key (KEK): wraps and unwraps patients' data keys, and never gives
    itself out. ``kek_id`` names it (kept beside each wrapped key, so a key sealed under a
    retired KEK is told apart from a tampered one). ``context`` is the patient id: a wrapped
    key opens only for her.

    A KMS fits behind it (AWS KMS ``Encrypt``/``Decrypt`` with the context as encryption
    context, GCP KMS with it as additional authenticated data, Vault transit): ``wrap``
    returns the KMS's ciphertext, ``unwrap`` asks the KMS with the ``kek_id`` it was wrapped
    by. Both raise :class:`Unsealable` for what does not open."""

    @property
    def kek_id(self) -> str: ...

    def wrap(self, data_key: bytes, context: str) -> bytes: ...

    def unwrap(self, wrapped: bytes, kek_id: str, context: str) -> bytes: ...


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def _aad(patient_id: str, field: str) -> bytes:
    return f"careknot/patient/{patient_id}/{field}".encode()


def seal(data_key: bytes, patient_id: str, field: str, text: str) -> bytes:
    """``text`` sealed under the patient's data key, bound to her id and the field's name."""
    nonce = os.urandom(NONCE_BYTES)
    return VERSION + nonce + AESGCM(data_key).encrypt(nonce, text.encode(), _aad(patient_id, field))


def unseal(data_key: bytes, patient_id: str, field: str, sealed: bytes) -> str:
    """The text :func:`seal` sealed; :class:`Unsealable` when it does not open with this key,
    for this patient and field, or was changed."""
    if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[:1] != VERSION:
        raise Unsealable(f"{field}: not a sealed value of a known format")
    nonce, body = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    try:
        return AESGCM(data_key).decrypt(nonce, body, _aad(patient_id, field)).decode()
    except (InvalidTag, ValueError) as exc:
        raise Unsealable(f"{field} of {patient_id}: does not open") from exc


def wrap_with(kek: bytes, kek_id: str, data_key: bytes, context: str) -> bytes:
    """A data key wrapped with AES-256-GCM under a local key-encryption key (for
    :class:`KeyWrapper` implementations that hold their key)."""
    nonce = os.urandom(NONCE_BYTES)
    aad = f"careknot/kek/{kek_id}/{context}".encode()
    return VERSION + nonce + AESGCM(kek).encrypt(nonce, data_key, aad)


def unwrap_with(kek: bytes, kek_id: str, wrapped: bytes, context: str) -> bytes:
    if len(wrapped) < 1 + NONCE_BYTES + 16 or wrapped[:1] != VERSION:
        raise Unsealable("not a wrapped key of a known format")
    nonce, body = wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :]
    aad = f"careknot/kek/{kek_id}/{context}".encode()
    try:
        key = AESGCM(kek).decrypt(nonce, body, aad)
    except (InvalidTag, ValueError) as exc:
        raise Unsealable(f"the data key of {context} does not unwrap") from exc
    if len(key) != KEY_BYTES:
        raise Unsealable(f"the data key of {context} is not {KEY_BYTES} bytes")
    return key


def key_id_of(kek: bytes, prefix: str = "file") -> str:
    """A name for a local key-encryption key that does not give it away."""
    return f"{prefix}:{hashlib.sha256(b'careknot-kek-id' + kek).hexdigest()[:16]}"


def normalised(text: str) -> str:
    """A name as a blind index compares it: Unicode NFKC, case folded, spaces collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def blind_index(index_key: bytes, text: str) -> bytes:
    """HMAC-SHA256 of the normalised ``text`` under the index's own key (never a data key
    or the KEK): equal names give equal indexes, and the index opens nothing."""
    return hmac.new(index_key, normalised(text).encode(), hashlib.sha256).digest()
