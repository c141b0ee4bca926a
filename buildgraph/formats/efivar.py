"""UEFI Secure Boot variables as files: signature lists and time-based authenticated
variables (``PK.auth``, ``KEK.auth``, ``db.auth``), as efitools' sign-efi-sig-list makes
them and as firmware (or systemd-boot's key enrollment) takes them.

An ``.auth`` file is an EFI_VARIABLE_AUTHENTICATION_2 (a timestamp and a PKCS#7
signature) followed by the variable's new value, an EFI_SIGNATURE_LIST of one X.509
certificate. The signature covers the variable's name, vendor GUID, attributes,
timestamp and value (UEFI 2.10, section 8.2.2). It is the bare SignedData: edk2 looks
for the digest algorithm at a fixed offset of it and refuses a ContentInfo around it
(Security Policy Violation), so the one cryptography writes is taken out of its wrapper.
"""

from __future__ import annotations

import datetime
import struct
import uuid
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
IMAGE_SECURITY_DATABASE = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
CERT_X509 = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
CERT_TYPE_PKCS7 = uuid.UUID("4aafd29d-68df-49ee-8aa9-347d375665a7")
VENDOR = {"PK": GLOBAL_VARIABLE, "KEK": GLOBAL_VARIABLE, "db": IMAGE_SECURITY_DATABASE,
          "dbx": IMAGE_SECURITY_DATABASE}  # fmt: skip
ATTRIBUTES = 0x27  # NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS | TIME_BASED_AUTHENTICATED
_WIN_CERT_REVISION = 0x0200
_WIN_CERT_TYPE_EFI_GUID = 0x0EF1
_EFI_TIME = struct.Struct("<HBBBBBBIhBB")


def signature_list(cert: x509.Certificate, owner: uuid.UUID) -> bytes:
    """An EFI_SIGNATURE_LIST holding ``cert`` (DER), owned by ``owner``."""
    der = cert.public_bytes(serialization.Encoding.DER)
    entry = owner.bytes_le + der
    header = CERT_X509.bytes_le + struct.pack("<III", 28 + len(entry), 0, len(entry))
    return header + entry


def efi_time(when: datetime.datetime) -> bytes:
    """An EFI_TIME in UTC, as authenticated variables carry it (no nanoseconds, no zone)."""
    when = when.astimezone(datetime.UTC)
    return _EFI_TIME.pack(when.year, when.month, when.day, when.hour, when.minute,
                          when.second, 0, 0, 0, 0, 0)  # fmt: skip


def _signed_bytes(name: str, timestamp: bytes, value: bytes) -> bytes:
    return (name.encode("utf-16-le") + VENDOR[name].bytes_le + struct.pack("<I", ATTRIBUTES)
            + timestamp + value)  # fmt: skip


def authenticated(
    name: str,
    value: bytes,
    signer_cert: x509.Certificate,
    signer_key: object,
    when: datetime.datetime,
) -> bytes:
    """The ``.auth`` file setting variable ``name`` (PK, KEK, db) to ``value``, signed by
    the key that may write it (PK for PK and KEK, a KEK for db)."""
    timestamp = efi_time(when)
    signature = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(_signed_bytes(name, timestamp, value))
        .add_signer(signer_cert, signer_key, hashes.SHA256())  # type: ignore[arg-type]
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature,
              pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.NoAttributes])
    )  # fmt: skip
    cert_data = CERT_TYPE_PKCS7.bytes_le + _signed_data(signature)
    win_cert = struct.pack("<IHH", 8 + len(cert_data), _WIN_CERT_REVISION, _WIN_CERT_TYPE_EFI_GUID)
    return timestamp + win_cert + cert_data + value


_SIGNED_DATA_OID = bytes.fromhex("06092a864886f70d010702")


def _der_header(data: bytes, at: int) -> tuple[int, int]:
    """(offset of the content, its length) of the DER element at ``at``."""
    first = data[at + 1]
    if first < 0x80:
        return at + 2, first
    count = first & 0x7F
    return at + 2 + count, int.from_bytes(data[at + 2 : at + 2 + count], "big")


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _signed_data(content_info: bytes) -> bytes:
    """The SignedData inside a PKCS#7 ContentInfo."""
    start, _length = _der_header(content_info, 0)
    if content_info[start : start + len(_SIGNED_DATA_OID)] != _SIGNED_DATA_OID:
        raise ValueError("not a PKCS#7 signedData ContentInfo")
    explicit = start + len(_SIGNED_DATA_OID)
    inner, length = _der_header(content_info, explicit)
    return content_info[inner : inner + length]


def content_info(signed_data: bytes) -> bytes:
    """A SignedData wrapped as a ContentInfo, as PKCS#7 readers (openssl) take it."""
    explicit = b"\xa0" + _der_length(len(signed_data)) + signed_data
    body = _SIGNED_DATA_OID + explicit
    return b"\x30" + _der_length(len(body)) + body


class Authenticated(NamedTuple):
    """An ``.auth`` file taken apart."""

    timestamp: bytes
    signature: bytes
    """The PKCS#7 SignedData (DER, no ContentInfo) over :meth:`signed_bytes`."""
    value: bytes

    def signed_bytes(self, name: str) -> bytes:
        return _signed_bytes(name, self.timestamp, self.value)

    def certificates(self) -> list[x509.Certificate]:
        """The certificates of the signature list in the value."""
        found, rest = [], self.value
        while rest:
            if len(rest) < 28:
                raise ValueError("a signature list is cut short")
            kind = uuid.UUID(bytes_le=rest[:16])
            size, header, entry = struct.unpack_from("<III", rest, 16)
            if kind != CERT_X509 or size < 28 + header or entry <= 16 or size > len(rest):
                raise ValueError("the value is not a list of X.509 certificates")
            body = rest[28 + header : size]
            for at in range(0, len(body), entry):
                found.append(x509.load_der_x509_certificate(body[at + 16 : at + entry]))
            rest = rest[size:]
        return found


def parse(data: bytes) -> Authenticated:
    """Split an ``.auth`` file; ValueError when it is not one."""
    if len(data) < _EFI_TIME.size + 24:
        raise ValueError("too short for an authenticated variable")
    timestamp = data[: _EFI_TIME.size]
    length, revision, kind = struct.unpack_from("<IHH", data, _EFI_TIME.size)
    start = _EFI_TIME.size + 8
    if revision != _WIN_CERT_REVISION or kind != _WIN_CERT_TYPE_EFI_GUID or length < 24:
        raise ValueError("no WIN_CERTIFICATE_UEFI_GUID after the timestamp")
    if uuid.UUID(bytes_le=data[start : start + 16]) != CERT_TYPE_PKCS7:
        raise ValueError("the certificate is not PKCS#7")
    end = _EFI_TIME.size + length
    if end > len(data):
        raise ValueError("the signature runs past the end of the file")
    return Authenticated(timestamp, data[start + 16 : end], data[end:])
