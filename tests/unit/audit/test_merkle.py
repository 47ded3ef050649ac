"""RFC 6962 hashing and RFC 9162 verification: published vectors, laws, hostile input."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import AuditError, ProofError
from audit.merkle import (
    EMPTY_ROOT,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from audit.tree import consistency_proof, inclusion_proof
from tests.unit.audit import _reference as ref
from tests.unit.audit._support import getter, tree_of

# The RFC 6962 test leaves and roots (certificate-transparency-go, transparency-dev/merkle).
LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ROOTS = [
    bytes.fromhex(h)
    for h in [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
]


def hx(*hashes: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in hashes]


# (0-based index, size, proof); the published vectors number leaves from 1.
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        hx(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        hx(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, hx("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        hx(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        hx(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        hx(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        hx(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        hx(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]


def test_empty_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaf_hashes([]) == EMPTY_ROOT


def test_hashes_use_domain_separation_prefixes() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_rfc6962_vectors(size: int) -> None:
    assert root_from_leaf_hashes([leaf_hash(d) for d in LEAVES[:size]]) == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_vectors_are_generated_and_verify(
    index: int, size: int, proof: list[bytes]
) -> None:
    hashes = [leaf_hash(d) for d in LEAVES[:size]]
    assert inclusion_proof(index, size, getter(hashes)) == proof
    verify_inclusion(hashes[index], index, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY_VECTORS)
def test_consistency_vectors_are_generated_and_verify(
    size1: int, size2: int, proof: list[bytes]
) -> None:
    hashes = [leaf_hash(d) for d in LEAVES[:size2]]
    assert consistency_proof(size1, size2, getter(hashes)) == proof
    verify_consistency(size1, size2, proof, ROOTS[size1 - 1], ROOTS[size2 - 1])


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS[1:])
def test_inclusion_fails_for_every_published_corruption(
    index: int, size: int, proof: list[bytes]
) -> None:
    leaf, root = leaf_hash(LEAVES[index]), ROOTS[size - 1]
    some = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    bad: list[tuple[int, int, list[bytes], bytes, bytes]] = [
        (index - 1, size, proof, leaf, root),
        (index + 1, size, proof, leaf, root),
        (index ^ 2, size, proof, leaf, root),
        (index, size * 2, proof, leaf, root),
        (index, size // 2, proof, leaf, root),
        (index, size, proof, some, root),
        (index, size, proof, leaf, EMPTY_ROOT),
        (index, size, [*proof, root], leaf, root),
        (index, size, [root, *proof], leaf, root),
        (index, size, proof[:-1], leaf, root),
        (index, size, [proof[0], some, *proof[1:]], leaf, root),
    ]
    for i in range(len(proof)):
        flipped = [*proof]
        flipped[i] = bytes([proof[i][0] ^ 8]) + proof[i][1:]
        bad.append((index, size, flipped, leaf, root))
    for i, n, p, lh, r in bad:
        with pytest.raises(ProofError):
            verify_inclusion(lh, i, n, p, r)


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY_VECTORS[1:])
def test_consistency_fails_for_every_published_corruption(
    size1: int, size2: int, proof: list[bytes]
) -> None:
    r1, r2 = ROOTS[size1 - 1], ROOTS[size2 - 1]
    bad: list[tuple[int, int, list[bytes], bytes, bytes]] = [
        (size1 - 1, size2, proof, r1, r2),
        (size1 + 1, size2, proof, r1, r2),
        (size1 ^ 2, size2, proof, r1, r2),
        (size1, size2 * 2, proof, r1, r2),
        (size1, size2 // 2, proof, r1, r2),
        (size1, size2, proof, r2, r1),
        (size1, size2, [], r1, r2),
        (size1, size2, [*proof, r1], r1, r2),
        (size1, size2, [*proof, r2], r1, r2),
        (size1, size2, [r1, *proof], r1, r2),
        (size1, size2, [proof[0], *proof], r1, r2),
        (size1, size2, proof[:-1], r1, r2),
    ]
    for i in range(len(proof)):
        flipped = [*proof]
        flipped[i] = bytes([proof[i][0] ^ 16]) + proof[i][1:]
        bad.append((size1, size2, flipped, r1, r2))
    for m, n, p, a, b in bad:
        if (m, n) == (size1, size2) and p == proof and (a, b) == (r1, r2):
            continue
        with pytest.raises(ProofError):
            verify_consistency(m, n, p, a, b)


def test_trivial_consistency_cases() -> None:
    verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    verify_consistency(0, 5, [], EMPTY_ROOT, ROOTS[4])
    verify_consistency(3, 3, [], ROOTS[2], ROOTS[2])
    for args in [
        (0, 5, [], ROOTS[0], ROOTS[4]),  # size 0 has the empty root
        (3, 3, [], ROOTS[2], ROOTS[3]),  # same size, different roots
        (3, 3, [ROOTS[0]], ROOTS[2], ROOTS[2]),  # same size, non-empty proof
        (0, 1, [EMPTY_ROOT], EMPTY_ROOT, ROOTS[0]),
        (2, 1, [], ROOTS[1], ROOTS[0]),  # time travel
    ]:
        with pytest.raises(ProofError):
            verify_consistency(*args)


def test_inclusion_in_empty_tree_fails() -> None:
    with pytest.raises(ProofError):
        verify_inclusion(EMPTY_ROOT, 0, 0, [], EMPTY_ROOT)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(min_value=1, max_value=256))
def test_every_inclusion_proof_verifies_and_any_change_fails(data: st.DataObject, n: int) -> None:
    hashes = tree_of(n)
    root = root_from_leaf_hashes(hashes)
    i = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(i, n, getter(hashes))
    assert proof == ref.path(i, [x.to_bytes(4, "big") for x in range(n)])
    verify_inclusion(hashes[i], i, n, proof, root)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1), label="element")
        b = data.draw(st.integers(0, 31), label="byte")
        bad = [*proof]
        bad[k] = bad[k][:b] + bytes([bad[k][b] ^ 1]) + bad[k][b + 1 :]
        with pytest.raises(ProofError):
            verify_inclusion(hashes[i], i, n, bad, root)
    wrong = data.draw(st.integers(0, 300).filter(lambda j: j != i), label="wrong index")
    with pytest.raises(ProofError):
        verify_inclusion(hashes[i], wrong, n, proof, root)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(min_value=1, max_value=128))
def test_every_consistency_proof_verifies_and_any_change_fails(data: st.DataObject, n: int) -> None:
    hashes = tree_of(n)
    m = data.draw(st.integers(0, n), label="size1")
    r1, r2 = root_from_leaf_hashes(hashes[:m]), root_from_leaf_hashes(hashes)
    proof = consistency_proof(m, n, getter(hashes))
    if 0 < m < n:
        assert proof == ref.proof(m, [x.to_bytes(4, "big") for x in range(n)])
    verify_consistency(m, n, proof, r1, r2)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1), label="element")
        b = data.draw(st.integers(0, 31), label="byte")
        bad = [*proof]
        bad[k] = bad[k][:b] + bytes([bad[k][b] ^ 0x80]) + bad[k][b + 1 :]
        with pytest.raises(ProofError):
            verify_consistency(m, n, bad, r1, r2)
        other = data.draw(st.integers(1, n).filter(lambda j: j != m), label="wrong size1")
        with pytest.raises(ProofError):
            verify_consistency(other, n, proof, r1, r2)


def test_root_matches_reference_for_many_sizes() -> None:
    for n in range(0, 70):
        data = [x.to_bytes(4, "big") for x in range(n)]
        assert root_from_leaf_hashes([leaf_hash(d) for d in data]) == ref.mth(data)


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.lists(st.binary(min_size=0, max_size=40), max_size=5),
)
hashy = st.one_of(st.binary(min_size=32, max_size=32), junk)
proofy = st.one_of(st.lists(hashy, max_size=12), junk)


@settings(max_examples=300, deadline=None)
@given(leaf=hashy, index=junk, size=junk, proof=proofy, root=hashy)
def test_hostile_inclusion_input_raises_only_proof_error(
    leaf: Any, index: Any, size: Any, proof: Any, root: Any
) -> None:
    try:
        verify_inclusion(leaf, index, size, proof, root)
    except AuditError as exc:
        assert isinstance(exc, ProofError)


@settings(max_examples=300, deadline=None)
@given(size1=junk, size2=junk, proof=proofy, root1=hashy, root2=hashy)
def test_hostile_consistency_input_raises_only_proof_error(
    size1: Any, size2: Any, proof: Any, root1: Any, root2: Any
) -> None:
    try:
        verify_consistency(size1, size2, proof, root1, root2)
    except AuditError as exc:
        assert isinstance(exc, ProofError)


@settings(max_examples=200, deadline=None)
@given(
    index=st.integers(0, 2**64),
    size=st.integers(0, 2**64),
    proof=st.lists(st.binary(min_size=32, max_size=32), max_size=70),
)
def test_random_well_typed_proofs_do_not_verify(index: int, size: int, proof: list[bytes]) -> None:
    with pytest.raises(ProofError):
        verify_inclusion(b"\x01" * 32, index, size, proof, bytes(32))


def _stored_nodes(n: int) -> dict[tuple[int, int], bytes]:
    """Every perfect subtree of a tree of n leaves, as a store keeps them."""
    from audit.tree import CompactRange

    nodes: dict[tuple[int, int], bytes] = {}
    tree = CompactRange()
    for h in tree_of(n):
        nodes.update({(level, index): node for (level, index), node in tree.append(h)})
    return nodes


@pytest.mark.slow
def test_every_inclusion_proof_up_to_256_leaves_verifies() -> None:
    nodes = _stored_nodes(256)
    hashes = tree_of(256)

    def get(level: int, index: int) -> bytes:
        return nodes[(level, index)]

    checked = 0
    for n in range(1, 257):
        root = root_from_leaf_hashes(hashes[:n])
        for i in range(n):
            verify_inclusion(hashes[i], i, n, inclusion_proof(i, n, get), root)
            checked += 1
    assert checked == 256 * 257 // 2


def test_every_consistency_proof_up_to_128_leaves_verifies() -> None:
    nodes = _stored_nodes(128)
    hashes = tree_of(128)
    roots = [root_from_leaf_hashes(hashes[:n]) for n in range(129)]

    def get(level: int, index: int) -> bytes:
        return nodes[(level, index)]

    checked = 0
    for n in range(0, 129):
        for m in range(0, n + 1):
            verify_consistency(m, n, consistency_proof(m, n, get), roots[m], roots[n])
            checked += 1
    assert checked == 129 * 130 // 2
