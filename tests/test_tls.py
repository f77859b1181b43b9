"""In transit: the server serves HTTPS and WSS itself from certificate files
(a self-signed certificate made here); half a configuration is refused."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from voicebot.app import REGISTRY, create_app
from voicebot.asr.fake import FakeEngine
from voicebot.config import Settings
from voicebot.tls import server_ssl_context

from .conftest import STAFF_TOKEN
from .test_privacy_keys import cli

pytestmark = pytest.mark.e2e


def self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_https_and_wss_with_a_self_signed_certificate(tmp_path):
    cert, key = self_signed(tmp_path)
    settings = Settings(port=0, db=str(tmp_path / "calls.db"), staff_token=STAFF_TOKEN,
                        tls_cert=str(cert), tls_key=str(key))
    app = create_app(settings, engine=FakeEngine())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(settings))
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        trusted = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"https://127.0.0.1:{port}/healthz", ssl=trusted) as r:
                assert r.status in (200, 503)  # answered over TLS (the engine may still load)
            with pytest.raises(aiohttp.ClientError):  # no plain HTTP on the TLS port
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    await r.read()
            with pytest.raises(aiohttp.ClientConnectorCertificateError):  # untrusted: refused
                async with http.get(f"https://127.0.0.1:{port}/healthz") as r:
                    await r.read()
            for _ in range(600):
                if app[REGISTRY].ready:
                    break
                await asyncio.sleep(0.05)
            async with http.ws_connect(f"wss://127.0.0.1:{port}/v1/stream", ssl=trusted) as ws:
                await ws.send_json({"event": "start", "caller": "+15550170"})
                first = await ws.receive(timeout=10)
                assert first.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)
    finally:
        await runner.cleanup()


def test_half_a_tls_configuration_is_refused(tmp_path):
    cert, _ = self_signed(tmp_path)
    done = cli("serve", "--port", "0", env={"VOICEBOT_DB": str(tmp_path / "c.db"),
                                            "VOICEBOT_TLS_CERT": str(cert)})
    assert done.returncode == 2 and "set both tls_cert and tls_key" in done.stderr
    bad = cli("serve", "--port", "0", env={"VOICEBOT_DB": str(tmp_path / "c.db"),
                                           "VOICEBOT_TLS_CERT": str(cert),
                                           "VOICEBOT_TLS_KEY": str(cert)})
    assert bad.returncode == 2 and "cannot load" in bad.stderr
