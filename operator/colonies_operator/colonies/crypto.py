"""Colonies identities and signatures.

Keys are secp256k1; an id is the FIPS SHA3-256 of the *hex text* of the uncompressed
public key; a signature is a recoverable ECDSA signature (RFC 6979, low-S) over the
SHA3-256 of the base64 payload string, laid out as r(32) || s(32) || recid(1) in hex.
coincurve's `sign_recoverable(digest, hasher=None)` produces exactly that layout.

Private keys never appear in messages or reprs: errors describe the input's shape only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

import coincurve

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_HEX130 = re.compile(r"[0-9a-fA-F]{130}")
_DERIVE_SALT = b"colonies-operator key derivation v1"


def sha3_256(data: bytes) -> bytes:
    """FIPS-202 SHA3-256 (not Keccak-256, which Ethereum tools call 'sha3')."""
    return hashlib.sha3_256(data).digest()


def _parse_private_key(prvkey: str) -> coincurve.PrivateKey:
    if not isinstance(prvkey, str):
        raise ValueError(f"private key must be a hex string, got {type(prvkey).__name__}")
    text = prvkey.strip()
    if not _HEX64.fullmatch(text):
        raise ValueError(
            f"private key must be 64 hexadecimal characters (32 bytes); got {len(text)} characters"
            + ("" if all(c in "0123456789abcdefABCDEF" for c in text) else " including non-hex ones")
        )
    try:
        return coincurve.PrivateKey(bytes.fromhex(text))
    except ValueError:
        raise ValueError("private key is not a valid secp256k1 scalar (zero or >= the curve order)") from None


def _id_of_public_key(public: coincurve.PublicKey) -> str:
    return hashlib.sha3_256(public.format(compressed=False).hex().encode()).hexdigest()


class Key:
    """A parsed private key with its id, parsed once so that signing costs no re-parsing."""

    __slots__ = ("_private", "_hex", "id")

    def __init__(self, prvkey: str) -> None:
        self._private = _parse_private_key(prvkey)
        self._hex = prvkey.strip().lower()
        self.id: str = _id_of_public_key(self._private.public_key)

    @classmethod
    def generate(cls) -> Key:
        return cls(new_private_key())

    def derive(self, purpose: str) -> Key:
        """A key derived from this one for `purpose` (HKDF-SHA256, RFC 5869): the same inputs
        always give the same key, and it tells nothing about this one. Lets the operator
        have a stable executor key per ColonyExecutor without storing it anywhere."""
        ikm = bytes.fromhex(self._hex)
        prk = hmac.new(_DERIVE_SALT, ikm, hashlib.sha256).digest()
        for counter in range(1, 256):  # a result outside [1, n-1] is astronomically rare: next block
            block = hmac.new(prk, purpose.encode() + bytes([counter]), hashlib.sha256).digest()
            try:
                coincurve.PrivateKey(block)
            except ValueError:
                continue
            return Key(block.hex())
        raise ValueError("no valid key could be derived")  # unreachable in practice

    @property
    def private_hex(self) -> str:
        """The private key as 64 hex characters, for storing it in a Secret."""
        return self._hex

    @property
    def public_hex(self) -> str:
        return self._private.public_key.format(compressed=False).hex()

    def sign(self, message: str) -> str:
        return self._private.sign_recoverable(sha3_256(message.encode()), hasher=None).hex()

    def __repr__(self) -> str:
        return f"Key(id={self.id[:12]}…)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


def new_private_key() -> str:
    """A fresh private key as 64 lowercase hex characters."""
    while True:
        candidate = os.urandom(32)
        try:
            coincurve.PrivateKey(candidate)
        except ValueError:  # zero or >= curve order: astronomically rare, draw again
            continue
        return candidate.hex()


def id_of(prvkey: str) -> str:
    return Key(prvkey).id


def sign(message: str, prvkey: str) -> str:
    return Key(prvkey).sign(message)


def recover_id(message: str, signature: str) -> str:
    """The id of the key that made `signature` over `message`, as the server computes it."""
    if not isinstance(signature, str) or not _HEX130.fullmatch(signature):
        raise ValueError("signature must be 130 hexadecimal characters (r || s || recid)")
    public = coincurve.PublicKey.from_signature_and_message(
        bytes.fromhex(signature), sha3_256(message.encode()), hasher=None
    )
    return _id_of_public_key(public)
