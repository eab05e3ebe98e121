"""Ed25519 keys and signatures for task patches (torch-free; PyNaCl imported lazily).

Key files are small text files, one line each, so a wrong file is recognised at once::

    mind-edge-ed25519-secret <64 hex digits: the 32-byte seed>      (mode 0600)
    mind-edge-ed25519-public <64 hex digits: the 32-byte verify key>

A patch is signed over a domain-separated message, ``b"mind-edge-patch-v1\\0" + sha256``,
where ``sha256`` is the digest of the patch's header and payload (see
:mod:`mind_edge.runtime.patch`), so a signature can never be replayed for another kind of
message. ``key_id`` (the first 16 hex digits of sha256 of the public key) names a key in
patches and error messages without revealing anything secret.

**Pinned trust** (as RAUC's keyring): ``BUNDLE/TRUSTED_KEYS`` lists public keys, one key line
each (the ``.pub`` format above; ``#`` comments allowed). Written by ``mind-edge patch trust
BUNDLE KEY.pub``, it belongs to the bundle folder (every version), is sent by ``deploy``, and
from then on every ``patch apply`` to that bundle requires a valid signature by one of those
keys, with or without ``--verify-key`` (which must then be one of them). Removing the file
removes the requirement: whoever may write the bundle folder can do that (see README:
"Security model").

A secret key file readable by group or others is refused, as ssh refuses such private keys.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from mind_edge.errors import MindEdgeError, require
from mind_edge.fileio import atomic_write, atomic_write_text
from mind_edge.schema import read_regular_file

SECRET_TAG = "mind-edge-ed25519-secret"
PUBLIC_TAG = "mind-edge-ed25519-public"
DOMAIN = b"mind-edge-patch-v1\0"
SIGNATURE_BYTES = 64
TRUSTED_KEYS_FILE = (
    "TRUSTED_KEYS"  #: the bundle's pinned keys, beside CURRENT (one definition; bundle/deploy import it)
)
MAX_KEY_FILE_BYTES = 4096
MAX_KEYRING_BYTES = 64 << 10


class SignatureError(MindEdgeError):
    """A key file is malformed, or a signature is missing, malformed or does not verify."""


def _nacl():
    return require("nacl.signing", "sign", "signing and verifying task patches")


def key_id(public_key: bytes) -> str:
    """A short, public name of a key: the first 16 hex digits of sha256(public key)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class KeyPair:
    secret_path: Path
    public_path: Path
    key_id: str


def _parse_key_line(text: str, tag: str, what: str, path: Path) -> bytes:
    parts = text.split()
    other = PUBLIC_TAG if tag == SECRET_TAG else SECRET_TAG
    if len(parts) == 2 and parts[0] == other:
        kind = "public" if other == PUBLIC_TAG else "secret"
        raise SignatureError(
            f"{path} is a {kind} key but a {what} was asked for; "
            + ("sign with the secret key file (without .pub)" if tag == SECRET_TAG else "verify with the .pub file")
        )
    if len(parts) != 2 or parts[0] != tag:
        raise SignatureError(f"{path} is not a mind-edge {what} file (expected one line '{tag} <64 hex digits>')")
    try:
        raw = bytes.fromhex(parts[1])
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise SignatureError(f"{what} {path} is malformed: expected 64 hex digits (32 bytes) after '{tag}'")
    return raw


def _read_key(path: str | os.PathLike, tag: str, what: str) -> bytes:
    path = Path(path)
    if not path.exists():
        raise SignatureError(f"{what} {path} does not exist; make a key pair with 'mind-edge keygen KEY'")
    data = read_regular_file(path, max_bytes=MAX_KEY_FILE_BYTES, error=SignatureError, what=what)
    if tag == SECRET_TAG:
        mode = os.stat(path).st_mode
        if mode & 0o077:
            raise SignatureError(
                f"the permissions {stat.S_IMODE(mode):04o} of the secret key {path} are too open: others "
                f"can read it. Make it private with: chmod 600 {path} (ssh refuses such keys too)"
            )
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise SignatureError(f"{what} {path} is not a mind-edge key file (not ASCII text)") from None
    return _parse_key_line(text, tag, what, path)


def generate_keypair(secret_path: str | os.PathLike, *, overwrite: bool = False) -> KeyPair:
    """Write a new Ed25519 key pair: ``secret_path`` (mode 0600) and ``secret_path.pub``."""
    signing = _nacl()
    secret_path = Path(secret_path)
    public_path = secret_path.with_name(secret_path.name + ".pub")
    for p in (secret_path, public_path):
        if p.exists() and not overwrite:
            raise SignatureError(f"{p} exists; choose another name or pass --overwrite")
    sk = signing.SigningKey.generate()
    seed, pub = bytes(sk), bytes(sk.verify_key)

    def write_secret(tmp: Path) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(f"{SECRET_TAG} {seed.hex()}\n")

    atomic_write(secret_path, write_secret, mode=0o600)
    atomic_write_text(public_path, f"{PUBLIC_TAG} {pub.hex()}\n")
    return KeyPair(secret_path, public_path, key_id(pub))


def load_public_key(path: str | os.PathLike) -> bytes:
    return _read_key(path, PUBLIC_TAG, "public key")


def sign_digest(secret_key_path: str | os.PathLike, digest: bytes) -> tuple[bytes, str]:
    """``(signature, key_id)`` of the patch digest ``digest`` (32 bytes) with the secret key file."""
    signing = _nacl()
    seed = _read_key(secret_key_path, SECRET_TAG, "secret key")
    sk = signing.SigningKey(seed)
    sig = sk.sign(DOMAIN + digest).signature
    return bytes(sig), key_id(bytes(sk.verify_key))


def verify_digest(public_key: bytes, digest: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid signature of ``digest`` under ``public_key``."""
    signing = _nacl()
    BadSignatureError = require("nacl.exceptions", "sign", "signing and verifying task patches").BadSignatureError

    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        signing.VerifyKey(public_key).verify(DOMAIN + digest, signature)
    except BadSignatureError:
        return False
    return True


# ----------------------------------------------------------------------------- pinned trust


def read_trusted_keys(root: str | os.PathLike) -> list[tuple[str, bytes]]:
    """``[(key_id, public key)]`` pinned by the bundle folder ``root`` (empty when it pins none)."""
    path = Path(root) / TRUSTED_KEYS_FILE
    if not os.path.lexists(path):
        return []
    data = read_regular_file(path, max_bytes=MAX_KEYRING_BYTES, error=SignatureError, what="the trusted keys file")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise SignatureError(
            f"{path} is not a mind-edge trusted keys file (not ASCII text); remove it and add the keys "
            "again with 'mind-edge patch trust'"
        ) from None
    keys: dict[str, bytes] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pub = _parse_key_line(line, PUBLIC_TAG, "trusted public key", path)
        keys[key_id(pub)] = pub
    if not keys:
        raise SignatureError(
            f"{path} lists no key; a bundle that pins trust needs at least one key — add one with "
            "'mind-edge patch trust BUNDLE KEY.pub' or remove the file"
        )
    return list(keys.items())


def _write_trusted_keys(root: Path, keys: list[tuple[str, bytes]]) -> Path:
    lines = ["# public keys trusted to sign task patches for this bundle (mind-edge patch trust)"]
    lines += [f"{PUBLIC_TAG} {pub.hex()}" for _, pub in keys]
    return atomic_write_text(root / TRUSTED_KEYS_FILE, "\n".join(lines) + "\n")


def trust_key(root: str | os.PathLike, public_key_path: str | os.PathLike) -> tuple[str, bool]:
    """Pin the public key ``public_key_path`` in the bundle folder ``root``; ``(key_id, newly added)``."""
    root = Path(root)
    pub = load_public_key(public_key_path)
    kid = key_id(pub)
    keys = read_trusted_keys(root)
    if any(k == kid for k, _ in keys):
        return kid, False
    _write_trusted_keys(root, keys + [(kid, pub)])
    return kid, True


def untrust_key(root: str | os.PathLike, kid: str) -> list[str]:
    """Remove key ``kid`` from the bundle's trusted keys; returns the key ids left (the file goes with the last)."""
    root = Path(root)
    keys = read_trusted_keys(root)
    left = [(k, p) for k, p in keys if k != kid]
    if len(left) == len(keys):
        raise SignatureError(
            f"bundle {root} does not trust key {kid[:16]} (trusted: {', '.join(k for k, _ in keys) or 'none'})"
        )
    if left:
        _write_trusted_keys(root, left)
    else:
        (root / TRUSTED_KEYS_FILE).unlink()
    return [k for k, _ in left]


def trusted_keys(root: str | os.PathLike, verify_key: str | os.PathLike | None) -> list[tuple[str, bytes, str]]:
    """The keys a patch for the bundle ``root`` must be signed by: ``[(key_id, public key, source)]``.

    The bundle's pinned keys when it has any (``verify_key`` must then be one of them), else
    ``verify_key``, else none (no signature required).
    """
    pinned = read_trusted_keys(root)
    where = f"the trusted keys of bundle {root} ({TRUSTED_KEYS_FILE})"
    if verify_key is not None:
        pub = load_public_key(verify_key)
        kid = key_id(pub)
        if pinned and kid not in {k for k, _ in pinned}:
            raise SignatureError(
                f"--verify-key {verify_key} (key {kid}) is not one of {where}: "
                f"{', '.join(k for k, _ in pinned)}; add it with 'mind-edge patch trust {root} "
                f"{verify_key}' or verify with a trusted key"
            )
        if not pinned:
            return [(kid, pub, f"--verify-key {verify_key}")]
    return [(k, p, where) for k, p in pinned]
