"""Our ids and signatures are the ones the Go server and pycolonies compute."""

import base64
import os
import random

import pytest

from colonies_operator.colonies import crypto

# Vectors from colonyos/colonies internal/crypto tests and pycolonies test/crypto_test.py.
HELLO_KEY = "d6eb959e9aec2e6fdc44b5862b269e987b8a4d6f2baca542d8acaa97ee5e74f6"
HELLO_KEY_ID = "5d6568f883451ae2e407d1a0a7992e414f2a67b69d0e6e9176d353b98f06f696"


def test_sha3_is_fips_sha3_256_not_keccak():
    assert crypto.sha3_256(b"hello world").hex() == "644bcc7e564373040999aac89e7622f3ca71fba1d972fd94a31c3bfbf24e3938"


def test_id_hashes_the_hex_text_of_the_uncompressed_public_key():
    key = crypto.Key("6d2fb6f546bacfd98c68769e61e0b44a697a30596c018a50e28200aa59b01c0a")
    assert key.public_hex == (
        "0408e903276ee7973666dceeefa5335e5c4b6b5989821906db98f8de8acf8f853824ca3234a8602200baa2d75f30cb2050cda18602824c3eb2da654a93a01a7ad4"
    )
    assert key.id == "4fef2b5a82d134d058c1883c72d6d9caf77cd59ca82d73105017590dea3dcb87"


def test_signature_is_deterministic_rfc6979_r_s_recid():
    assert crypto.sign("hello", HELLO_KEY) == (
        "e713a1bb015fecabb5a084b0fe6d6e7271fca6f79525a634183cfdb175fe69241f4da161779d8e6b761200e1cf93766010a19072fa778f9643363e2cfadd640900"
    )
    assert crypto.id_of(HELLO_KEY) == HELLO_KEY_ID


def test_a_signature_made_with_another_nonce_still_recovers_the_signer():
    go_interop = (
        "997eca36736d465e0e8d64e6d657ff4c939c8f5cad4272797ea0fe372bfd8d0953d21b3d06ded5dd80aee8cfa3a9be7ce615ce690eb64184fe15962943fe541300"
    )
    assert crypto.recover_id("hello", go_interop) == HELLO_KEY_ID


def test_envelope_signature_matches_the_go_client():
    payload = base64.b64encode(
        b'{"processid":"0000000000000000000000000000000000000000000000000000000000000000","msgtype":"getprocessmsg"}'
    ).decode()
    assert crypto.sign(payload, HELLO_KEY) == (
        "830cb90cb0887e8b499cde05fd96662fd00a5829840193268894f51e237eb8ed1568864d8ca1ea0a5062099d973b43f9a24b9d97f0f7b3a789bb6e6a1fdcabd701"
    )


@pytest.mark.parametrize("prvkey, expected_id", [
    ("fcc79953d8a751bf41db661592dc34d30004b1a651ffa0725b03ac227641499d", "039231c7644e04b6895471dd5335cf332681c54e27f81fac54f9067b3f2c0103"),
    ("ba949fa134981372d6da62b6a56f336ab4d843b22c02a4257dcf7d0d73097514", "4787a5071856a4acf702b2ffcea422e3237a679c681314113d86139461290cf4"),
    ("ddf7f7791208083b6a9ed975a72684f6406a269cfa36f1b1c32045c0a71fff05", "3fc05cf3df4b494e95d6a3d297a34f19938f7daa7422ab0d4f794454133341ac"),
])
def test_docker_compose_dev_keys_have_their_published_ids(prvkey, expected_id):
    assert crypto.id_of(prvkey) == expected_id


def test_ids_and_signatures_are_byte_identical_to_pycolonies_for_random_keys_and_messages():
    pycolonies_crypto = pytest.importorskip("crypto").Crypto()  # pycolonies' top-level module
    rng = random.Random(20261125)
    for _ in range(250):
        prvkey = crypto.new_private_key()
        message = base64.b64encode(os.urandom(rng.randint(0, 600))).decode()
        ours = crypto.Key(prvkey)
        assert ours.id == pycolonies_crypto.id(prvkey)
        signature = ours.sign(message)
        assert signature == pycolonies_crypto.sign(message, prvkey)
        assert crypto.recover_id(message, signature) == ours.id


def test_new_keys_are_64_lowercase_hex_and_distinct():
    keys = {crypto.new_private_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(len(k) == 64 and k == k.lower() and int(k, 16) > 0 for k in keys)


@pytest.mark.parametrize("bad, says", [
    ("abc", "64 hexadecimal characters"),
    ("zz" * 32, "non-hex"),
    ("00" * 32, "not a valid secp256k1 scalar"),
    ("ff" * 32, "not a valid secp256k1 scalar"),
    ("", "64 hexadecimal characters"),
])
def test_a_malformed_private_key_is_a_clear_value_error_that_does_not_echo_it(bad, says):
    with pytest.raises(ValueError, match=says) as info:
        crypto.Key(bad)
    if len(bad) >= 8:
        assert bad not in str(info.value)


def test_a_key_never_shows_its_private_half():
    key = crypto.Key(HELLO_KEY)
    assert HELLO_KEY not in repr(key) and HELLO_KEY not in str(key)


def test_a_tampered_signature_recovers_a_different_id():
    signature = crypto.sign("payload", HELLO_KEY)
    tampered = ("0" if signature[10] != "0" else "1").join((signature[:10], signature[11:]))
    try:
        assert crypto.recover_id("payload", tampered) != HELLO_KEY_ID
    except ValueError:
        pass  # or no key recovers at all: either way it is not ours
