"""A certificate authority and kubelet serving certificates, made when a test cluster starts.

A real cluster's kubelets serve HTTPS with a certificate signed by the cluster CA (kubelet
``serverTLSBootstrap``: a CSR approved and signed by kube-controller-manager) or a self-signed one
(kubelet's default without it). Clients that verify the serving certificate need the CA; this module
makes one per test cluster, and a certificate per node naming the addresses the node publishes, so a
collector's TLS verification is exercised for real: the right CA, a wrong one, a name that does not
match. Keys are EC P-256 (what kubelet's own CSRs use since 1.19), quick enough for 500 nodes.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class CertificateAuthority:
    """A self-signed CA that issues kubelet serving certificates (``issue_serving``)."""

    def __init__(self, common_name: str = "kubevirt-test-cluster-ca") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        subject = _name(common_name)
        self._subject = subject
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem: bytes = self._cert.public_bytes(serialization.Encoding.PEM)

    def issue_client(self, user: str, groups: tuple[str, ...] = ()) -> KeyPair:
        """A client certificate: ``CN`` the user name, ``O`` its groups (what the API server and
        kubelet's x509 authenticator read)."""
        parts = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
        parts += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
        return self._issue(x509.Name(parts), ExtendedKeyUsageOID.CLIENT_AUTH)

    def issue_serving(self, node: str, ips: tuple[str, ...] = ("127.0.0.1",)) -> KeyPair:
        """A kubelet serving certificate as kube-controller-manager signs one for ``node``'s CSR:
        ``CN=system:node:<node>``, ``O=system:nodes``, SANs the node's host name and IPs (the
        ``kubernetes.io/kubelet-serving`` signer's rules, pkg/apis/certificates/v1/helpers.go)."""
        names: list[x509.GeneralName] = [x509.DNSName(node)]
        names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        return self._issue(
            _name(f"system:node:{node}", "system:nodes"),
            ExtendedKeyUsageOID.SERVER_AUTH,
            x509.SubjectAlternativeName(names),
            x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
        )

    def _issue(
        self, subject: x509.Name, usage: x509.ObjectIdentifier, *extras: x509.ExtensionType
    ) -> KeyPair:
        """A leaf certificate for a new key, signed by this CA, valid from five minutes ago."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        for extension in extras:
            builder = builder.add_extension(extension, critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))
