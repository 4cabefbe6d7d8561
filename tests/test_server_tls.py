"""TLS and mutual TLS against a real server, with certificates made here by `cryptography`."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import grpc
import pytest
from fake_engine import FakeEngine
from serverutil import BackgroundServer

from lineage.client import LineageClient, RemoteError

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _cert(name: str, key, issuer_name, issuer_key, *, ca: bool, server: bool = False):
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
         .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                            critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


def _write(d: Path, name: str, cert, key) -> tuple[Path, Path]:
    c, k = d / f"{name}.crt", d / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    out = {}
    for ca_name in ("ca", "other-ca"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(ca_name, key, None, None, ca=True)
        out[ca_name], _ = _write(d, ca_name, cert, key)
        out[ca_name + ".obj"] = (cert, key)  # type: ignore[assignment]
    ca_cert, ca_key = out["ca.obj"]  # type: ignore[misc]
    for name, server in (("server", True), ("client", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        out[name], out[name + ".key"] = _write(
            d, name, _cert(name, key, ca_cert.subject, ca_key, ca=False, server=server), key)
    o_cert, o_key = out["other-ca.obj"]  # type: ignore[misc]
    key = ec.generate_private_key(ec.SECP256R1())
    out["rogue"], out["rogue.key"] = _write(
        d, "rogue", _cert("rogue", key, o_cert.subject, o_key, ca=False), key)
    return out


def test_mtls_accepts_the_ca_client_and_refuses_others(pki):
    eng = FakeEngine()
    with BackgroundServer(eng, tls_cert=str(pki["server"]), tls_key=str(pki["server.key"]),
                          client_ca=str(pki["ca"])) as s:
        ca = pki["ca"].read_bytes()
        with LineageClient(s.address, root_certificates=ca,
                           private_key=pki["client.key"].read_bytes(),
                           certificate_chain=pki["client"].read_bytes(), timeout=10) as c:
            assert c.register("t1", "/m", "teacher").name == "t1"
        for key, chain in ((None, None), (pki["rogue.key"].read_bytes(),
                                          pki["rogue"].read_bytes())):
            with LineageClient(s.address, root_certificates=ca, private_key=key,
                               certificate_chain=chain, tls=True, timeout=10) as c:
                with pytest.raises(RemoteError) as e:
                    c.list_models()
                assert e.value.code == grpc.StatusCode.UNAVAILABLE


def test_tls_without_client_certs_and_plaintext_is_refused(pki):
    with BackgroundServer(FakeEngine(), tls_cert=str(pki["server"]),
                          tls_key=str(pki["server.key"])) as s:
        with LineageClient(s.address, root_certificates=pki["ca"].read_bytes(),
                           timeout=10) as c:
            assert c.list_models() == []
        with LineageClient(s.address, timeout=5) as c:  # plaintext to a TLS port
            with pytest.raises(RemoteError):
                c.list_models()
