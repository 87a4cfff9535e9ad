"""A lab cluster's certificates: one CA per cluster, a certificate per component, kubeconfigs that use them.

A real estate brings its own PKI; the lab makes one per site cluster, under the cluster's directory, once
(kept across restarts so kubeconfigs handed out stay valid).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID = dt.timedelta(days=3650)

# identity -> (common name, organisation): what RBAC's defaults expect of each component
CLIENTS = {
    "admin": ("tradestack-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
    "kube-proxy": ("system:kube-proxy", None),
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
}


@dataclass(frozen=True)
class Pki:
    directory: Path

    def crt(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(cn: str, org: str | None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(parts)


def _issue(pki: Pki, name: str, subject: x509.Name, usage: list[x509.ObjectIdentifier],
           sans: list[x509.GeneralName] | None = None) -> None:
    ca_key = serialization.load_pem_private_key(pki.key("ca").read_bytes(), None)
    ca = x509.load_pem_x509_certificate(pki.crt("ca").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + VALID)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usage), critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    _write_key(pki.key(name), key)
    pki.crt(name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure(directory: Path, cluster: str, node: str, addresses: list[str], service_ip: str) -> Pki:
    """Create the CA, serving and client certificates and the service-account key, unless already there."""
    pki = Pki(directory)
    if pki.crt("admin").exists():
        return pki
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    subject = _name(f"{cluster}-ca", None)
    ca = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + VALID)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    _write_key(pki.key("ca"), ca_key)
    pki.crt("ca").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server = [ExtendedKeyUsageOID.SERVER_AUTH]
    client = [ExtendedKeyUsageOID.CLIENT_AUTH]
    ips = [x509.IPAddress(ipaddress.ip_address(a)) for a in [*addresses, "127.0.0.1", service_ip]]
    dns = [x509.DNSName(n) for n in ("kubernetes", "kubernetes.default", "kubernetes.default.svc", node)]
    _issue(pki, "apiserver", _name("kube-apiserver", None), server, ips + dns)
    _issue(pki, "kubelet", _name(node, None), server, ips[:-1] + [x509.DNSName(node)])
    _issue(pki, "node", _name(f"system:node:{node}", "system:nodes"), client)
    for name, (cn, org) in CLIENTS.items():
        _issue(pki, name, _name(cn, org), client)
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pki.key("sa"), sa)
    pki.directory.joinpath("sa.pub").write_bytes(sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki


def kubeconfig(pki: Pki, identity: str, server: str, cluster: str) -> str:
    """A kubeconfig for `identity` (a certificate name) with everything inline, so it can be handed over."""
    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": cluster,
        "clusters": [{"name": cluster, "cluster": {"server": server,
                                                   "certificate-authority-data": b64(pki.crt("ca"))}}],
        "users": [{"name": identity, "user": {"client-certificate-data": b64(pki.crt(identity)),
                                              "client-key-data": b64(pki.key(identity))}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": identity}}],
    }, sort_keys=False)


def ensure_node(pki: Pki, key: str, node: str, address: str) -> None:
    """A worker node's own certificates (`kubelet@KEY` to serve, `node@KEY` to reach the API server as
    system:node:NODE), unless already there."""
    if pki.crt(f"node@{key}").exists():
        return
    _issue(pki, f"kubelet@{key}", _name(node, None), [ExtendedKeyUsageOID.SERVER_AUTH],
           [x509.IPAddress(ipaddress.ip_address(address)), x509.DNSName(node)])
    _issue(pki, f"node@{key}", _name(f"system:node:{node}", "system:nodes"), [ExtendedKeyUsageOID.CLIENT_AUTH])
