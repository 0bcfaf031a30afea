"""The emulator's certificate authority and the per-cache server certificates it signs.

Clients of an emulated cache verify its server with the CA file the emulator prints
(``Azure:Emulator:CaFile``); each certificate names the cache's loopback address (IP SAN), so
ordinary host-name verification works against ``127.0.0.x``.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from apphost_sdk.files import write_private

CA_COMMON_NAME = "apphost ARM emulator CA"
_CA_LIFETIME = datetime.timedelta(days=365)
_SERVER_LIFETIME = datetime.timedelta(days=30)
_BACKDATE = datetime.timedelta(hours=1)  # tolerate small clock differences


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class CertificateAuthority:
    """A CA whose certificate is ``ca.pem`` (public) and key ``ca.key`` (0600) in a folder.

    An existing pair in that folder is reused, so a data-plane root keeps one CA.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cert_file = folder / "ca.pem"
        self.key_file = folder / "ca.key"
        if self.cert_file.is_file() and self.key_file.is_file():
            self._cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
            key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{self.key_file} is not an EC key; delete {folder} to renew")
            self._key = key
        else:
            self._key = ec.generate_private_key(ec.SECP256R1())
            self._cert = self._self_signed()
            self.save()

    def save(self) -> None:
        """(Re)write ``ca.key`` (0600) and ``ca.pem``, e.g. after the folder was emptied."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(self.key_file, _key_pem(self._key))
        write_private(self.cert_file, _cert_pem(self._cert), mode=0o644)

    def _self_signed(self) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
        now = datetime.datetime.now(datetime.timezone.utc)
        public = self._key.public_key()
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    def issue_server(self, address: str, folder: Path) -> tuple[Path, Path]:
        """Write ``server.pem`` and ``server.key`` (0600) for ``address`` into ``folder``;
        returns their paths. The certificate's SANs are the IP ``address`` and ``localhost``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_public = self._key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _SERVER_LIFETIME)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(address)), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )
        cert_file, key_file = folder / "server.pem", folder / "server.key"
        write_private(key_file, _key_pem(key))
        write_private(cert_file, _cert_pem(cert), mode=0o644)
        return cert_file, key_file
