"""The task patch file: positions encodings, fingerprints, integrity checks and signatures (torch-free)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from patch_helpers import CLASSES, NAMES, NET, world

from mind_edge.runtime.graph import random_arrays
from mind_edge.runtime.patch import (
    MAGIC,
    PatchError,
    apply_to_arrays,
    arrays_fingerprint,
    build_patch,
    decode_positions,
    encode_positions,
    parse_patch,
    read_patch,
    verify_signature,
)
from mind_edge.runtime.signing import SignatureError, generate_keypair


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    return world(tmp_path_factory.mktemp("patch_format"))


@pytest.mark.parametrize(
    "numel,free_frac,claim",
    [(4608, 0.6, 460), (4608, 0.9, 46), (100_000, 1.0, 100), (27, 1.0, 2), (70_000, 1.0, 3), (9, 1.0, 0)],
)
def test_positions_round_trip_and_the_smaller_encoding_is_chosen(numel, free_frac, claim):
    rng = np.random.default_rng(numel + claim)
    owner = np.where(rng.random(numel) < free_frac, -1, 0).astype(np.int8)
    free = np.flatnonzero(owner == -1)
    claimed = np.sort(rng.choice(free, size=min(claim, free.size), replace=False))
    enc, data = encode_positions(owner, claimed)
    back = decode_positions(enc, data, owner, claimed.size, "test")
    assert np.array_equal(back, claimed)
    bitmap_bytes = -(-free.size // 8)
    assert data.nbytes <= bitmap_bytes  # never larger than the bitmap
    if claim and free.size / claim < 8:
        assert enc == "bitmap"  # dense claims: the bitmap wins
    if claim == 100 and numel == 100_000:
        assert enc == "delta16"  # 1 in 1000: 2-byte gaps beat a 12.5 kB bitmap


def test_decode_rejects_claims_on_owned_weights_and_wrong_counts():
    owner = np.array([-1, 0, -1, -1, 1, -1], dtype=np.int8)
    with pytest.raises(PatchError, match="already owned"):
        decode_positions("delta8", np.array([2], np.uint8), owner, 1, "layer x")  # index 1 is owned by task 0
    with pytest.raises(PatchError, match="claims 2 weights, its header says 3"):
        decode_positions("bitmap", np.packbits([1, 1, 0, 0]), owner, 3, "layer x")
    with pytest.raises(PatchError, match="bytes"):
        decode_positions("bitmap", np.zeros(5, np.uint8), owner, 0, "layer x")
    with pytest.raises(PatchError, match="unknown position encoding"):
        decode_positions("rle", np.zeros(1, np.uint8), owner, 0, "layer x")


def test_fingerprint_changes_with_any_weight_owner_bn_or_head():
    def fresh():  # its own arrays: the edits below must not leak into other tests
        return random_arrays(NET, CLASSES, seed=9, owners="mind").first_tasks(3)

    a = fresh()
    fp = arrays_fingerprint(a)
    assert fp == arrays_fingerprint(fresh())
    a.layers[5].weight.reshape(-1)[7] += np.float32(1e-7)
    assert arrays_fingerprint(a) != fp
    b = fresh()
    b.norms[2].sets[1].var[0] += np.float32(1e-3)
    assert arrays_fingerprint(b) != fp
    c = fresh()
    c.layers[0].owner.reshape(-1)[np.flatnonzero(c.layers[0].owner.reshape(-1) == -1)[0]] = 2
    assert arrays_fingerprint(c) != fp


def test_patch_round_trip_rebuilds_the_network_bit_for_bit(w):
    p = read_patch(w.p3)
    assert p.task == 3 and p.classes == CLASSES[3] and p.class_names == [NAMES[c] for c in CLASSES[3]]
    assert not p.signed and p.header["base"]["num_tasks"] == 3
    new = apply_to_arrays(w.full.first_tasks(3), p)
    assert new.same_as(w.full.first_tasks(4))
    assert arrays_fingerprint(new) == p.header["result_fingerprint"]
    assert set(p.arrays) == {"positions", "values", "bn", "head_w", "head_b"}  # few npz members: small overhead


def test_patch_size_is_about_one_over_capacity_of_the_weights():
    from mind_edge.runtime.graph import build_graph

    net = {"arch": "resnet32", "in_channels": 3, "input_size": [32, 32], "width": 1.0, "capacity": 10}
    full = random_arrays(net, [[2 * i, 2 * i + 1] for i in range(5)], seed=1, owners="mind")
    data = build_patch(full.first_tasks(4), full, 4, ["a", "b"])
    model = len(build_graph(full, layout="shared", temperature=1.0).SerializeToString())
    assert len(data) / model <= 0.15  # issue 5: at most 15 % of the bundle for capacity 10 (measured: ~9 %)


@pytest.mark.parametrize("cut", [0, 5, 8, 11, 40, -200, -66, -64, -2, -1])
def test_truncated_patch_is_rejected(w, cut):
    data = w.p3_signed.read_bytes()
    with pytest.raises(PatchError, match="truncated|not a mind-edge task patch|corrupt"):
        parse_patch(data[:cut] if cut >= 0 else data[:cut])


@pytest.mark.parametrize("where", ["magic", "header", "payload", "digest", "trailing"])
def test_tampered_patch_is_rejected(w, where):
    data = bytearray(w.p3.read_bytes())
    (hlen,) = struct.unpack_from("<I", data, len(MAGIC))
    offsets = {
        "magic": 2,
        "header": len(MAGIC) + 4 + hlen // 2,
        "payload": len(MAGIC) + 4 + hlen + 8 + 50,
        "digest": len(data) - 2 - 32 + 3,
    }
    if where == "trailing":
        data += b"\0"
    else:
        data[offsets[where]] ^= 0x01
    with pytest.raises(PatchError, match="tampered|not a mind-edge|unexpected bytes"):
        parse_patch(bytes(data))


def test_header_edits_are_caught_even_when_the_json_stays_valid(w):
    data = w.p3.read_bytes()
    assert b'"seven"' in data
    with pytest.raises(PatchError, match="tampered"):
        parse_patch(data.replace(b'"seven"', b'"sevem"', 1))


def test_signature_verifies_with_the_right_key_only(w, tmp_path):
    signed = read_patch(w.p3_signed)
    assert signed.signed and verify_signature(signed, w.pub) == signed.header["signature"]["key_id"]
    with pytest.raises(PatchError, match="signed with key .* not with the key"):
        verify_signature(signed, w.other_pub)
    with pytest.raises(PatchError, match="not signed but a signature is required"):
        verify_signature(read_patch(w.p3), w.pub)
    assert verify_signature(read_patch(w.p3), None) is None  # no key: integrity only
    data = bytearray(w.p3_signed.read_bytes())
    data[-5] ^= 0x40  # flip a bit of the signature itself
    forged = parse_patch(bytes(data))  # the content is intact ...
    with pytest.raises(PatchError, match="does not verify"):
        verify_signature(forged, w.pub)  # ... but the signature is not


def test_key_files_are_checked(w, tmp_path):
    with pytest.raises(SignatureError, match="is a secret key but a public key was asked for"):
        verify_signature(read_patch(w.p3_signed), w.key)
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-ed25519 AAAA\n")
    with pytest.raises(SignatureError, match="not a mind-edge public key file"):
        verify_signature(read_patch(w.p3_signed), bad)
    with pytest.raises(SignatureError, match="exists"):
        generate_keypair(w.key)
    assert oct(w.key.stat().st_mode & 0o777) == "0o600"


def test_build_patch_refuses_inconsistent_networks():
    full = random_arrays(NET, CLASSES, seed=3, owners="mind")
    other = random_arrays(NET, CLASSES, seed=4, owners="mind")
    with pytest.raises(PatchError, match="owner maps of earlier tasks differ"):
        build_patch(other.first_tasks(3), full.first_tasks(4), 3, ["a", "b", "c"])
    with pytest.raises(PatchError, match="needs a base of 3 tasks"):
        build_patch(full.first_tasks(2), full.first_tasks(4), 3, ["a", "b", "c"])
    with pytest.raises(PatchError, match="3 classes but 1 class names"):
        build_patch(full.first_tasks(3), full.first_tasks(4), 3, ["a"])
