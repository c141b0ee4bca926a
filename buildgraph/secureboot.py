"""Secure Boot keys: the directory a build signs with (SECUREBOOT_KEYS, the imager's
``--secureboot-keys``, Talos' ``/secureboot`` mount), checked before anything runs,
and ``buildgraph secureboot keys DIR``, which makes a fresh set.

:data:`FILES` is the directory's table: what each file is and whether a build reads it.
A build reads the UKI signing key and certificate, the PK/KEK/db certificates and their
signed ``.auth`` variables (which go on the media, for enrollment); PK.key and KEK.key
sign those variables once, here, and no build ever reads them: keep them offline.

No private key's bytes leave this module: what enters node keys is :func:`identity`
(certificate fingerprints and the sha256 of the key file), and every message names a
file, never its contents.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .engine.errors import BuildgraphError

SIGNING_KEY = "uki-signing-key.pem"
SIGNING_CERT = "uki-signing-cert.pem"
VARIABLES = ("PK", "KEK", "db")
"""The Secure Boot variables a set enrolls, in enrollment order (db last)."""
GENERATE = "generate a set with: buildgraph secureboot keys DIR"


class File(NamedTuple):
    name: str
    what: str
    built_with: bool
    """A build reads it (else only ``secureboot keys`` does, to sign the variables)."""
    private: bool = False


FILES: tuple[File, ...] = (
    File(SIGNING_KEY, "the private key UKIs are signed with, whose certificate db holds",
         True, private=True),
    File(SIGNING_CERT, "the certificate of the UKI signing key", True),
    *(File(f"{name}.crt", f"the {name} certificate, for enrollment", True) for name in VARIABLES),
    *(File(f"{name}.auth", f"{name} as a signed EFI variable, for enrollment", True)
      for name in VARIABLES),
    File("PK.key", "the platform key's private key: signs PK.auth and KEK.auth", False,
         private=True),
    File("KEK.key", "the key exchange key's private key: signs db.auth", False, private=True),
)  # fmt: skip
SIGNER = {"PK": "PK", "KEK": "PK", "db": "KEK"}
"""Which key signs each variable's ``.auth``."""


class KeysError(BuildgraphError):
    """A key directory a build cannot use; the message names the file."""


@dataclass(frozen=True)
class KeySet:
    """A checked key directory, and the sha256 of each file a build reads, by name."""

    directory: Path
    digests: dict[str, str]


def check(directory: str | Path, what: str = "SECUREBOOT_KEYS") -> KeySet:
    """The key set in ``directory``, every file a build reads present and well-formed and
    the signing key matching its certificate; else one error naming the file."""
    from cryptography import x509

    from .formats import efivar

    root = Path(directory)
    if not root.is_dir():
        raise KeysError(f"{what} {directory}: no such directory", hint=GENERATE)
    certs, digests, key = {}, {}, None
    for file in FILES:
        if not file.built_with:
            continue
        data = _read(root, file, what)
        digests[file.name] = hashlib.sha256(data).hexdigest()
        try:
            if file.name.endswith(".auth"):
                efivar.parse(data).certificates()
            elif file.private:
                key = _load_key(data)
            else:
                certs[file.name] = x509.load_pem_x509_certificate(data)
        except ValueError:
            raise KeysError(
                f"{what}: {root / file.name} is not {file.what}"
                f" ({_FORMAT[file.name.rsplit('.', 1)[1]]})",
                hint=f"replace it, or {GENERATE}",
            ) from None
    if not _same_public_key(key, certs[SIGNING_CERT]):
        raise KeysError(
            f"{what}: {root / SIGNING_KEY} is not the key of {root / SIGNING_CERT}",
            hint="give the signing key and certificate of one pair",
        )
    return KeySet(root, digests)


_FORMAT = {"pem": "PEM", "crt": "a PEM certificate", "auth": "an EFI authenticated variable"}


def _read(root: Path, file: File, what: str) -> bytes:
    try:
        return (root / file.name).read_bytes()
    except FileNotFoundError:
        raise KeysError(
            f"{what}: {root / file.name} is missing ({file.what})",
            hint=f"put it there, or {GENERATE}",
        ) from None
    except OSError as err:
        raise KeysError(
            f"{what}: {root / file.name} cannot be read: {err.strerror}",
            hint="make it readable by the user who builds",
        ) from None


def _load_key(data: bytes):
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(data, password=None)
    except (TypeError, ValueError):  # encrypted, or not a key: say neither with its bytes
        raise ValueError("not an unencrypted PEM private key") from None


def _same_public_key(key, cert) -> bool:
    from cryptography.hazmat.primitives import serialization

    def spki(public) -> bytes:
        return public.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip

    return spki(key.public_key()) == spki(cert.public_key())


def identity(directory: str | Path) -> str:
    """What a build's node key takes of a key set: each certificate's and ``.auth``'s
    sha256, and the sha256 of the signing key's file, never the key itself. Every secure
    boot node of a plan probes the same directory: it is checked once while its files'
    stats stay the same."""
    return _identity(str(directory), _stats(Path(directory)))


def _stats(root: Path) -> tuple[tuple[int, ...] | None, ...]:
    def stat(name: str) -> tuple[int, ...] | None:
        try:
            st = (root / name).stat()
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)

    return tuple(stat(file.name) for file in FILES if file.built_with)


@functools.lru_cache(maxsize=8)
def _identity(directory: str, _stats: tuple) -> str:
    keys = check(directory)
    return " ".join(f"{name}={digest}" for name, digest in keys.digests.items())


def generate(directory: Path, name: str = "buildgraph") -> list[Path]:
    """A new key set in ``directory`` (which must not hold one): RSA 2048 keys with
    self-signed certificates for PK, KEK and db (the UKI signing pair), and the three
    variables signed for enrollment. Files are written 0600 (keys) or 0644, each whole."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from .formats import efivar

    present = [f.name for f in FILES if (directory / f.name).exists()]
    if present:
        raise BuildgraphError(
            f"{directory} already holds {', '.join(present)}",
            hint="give an empty or new directory: a key set is never overwritten",
        )
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    pairs = {}
    for variable in VARIABLES:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pairs[variable] = (key, _certificate(key, f"{name} Secure Boot {variable}", now))
    owner = _owner(pairs["PK"][1])
    files: dict[str, bytes] = {}
    for variable in VARIABLES:
        key, cert = pairs[variable]
        signer_key, signer_cert = pairs[SIGNER[variable]]
        value = efivar.signature_list(cert, owner)
        files[f"{variable}.auth"] = efivar.authenticated(variable, value, signer_cert,
                                                         signer_key, now)  # fmt: skip
        files[f"{variable}.crt"] = _pem_cert(cert)
    files[SIGNING_CERT] = files["db.crt"]
    files[SIGNING_KEY] = _pem_key(pairs["db"][0])
    files["PK.key"] = _pem_key(pairs["PK"][0])
    files["KEK.key"] = _pem_key(pairs["KEK"][0])
    private = {f.name for f in FILES if f.private}
    written = []
    for file in FILES:
        path = directory / file.name
        _write(path, files[file.name], 0o600 if file.name in private else 0o644)
        written.append(path)
    return written


def _owner(pk_cert):
    import uuid

    from cryptography.hazmat.primitives import hashes

    return uuid.UUID(bytes=pk_cert.fingerprint(hashes.SHA256())[:16], version=4)


def _certificate(key, common_name: str, now: datetime.datetime):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def _pem_cert(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
