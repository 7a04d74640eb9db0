"""A local OpenID Connect provider's key set for tests: RSA keys, a JWKS endpoint on
127.0.0.1 served from a thread (the parts fetch it from other processes), and tokens
signed as the provider signs them."""

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


@dataclass
class Provider:
    url: str = ""
    published: list[dict[str, Any]] = field(default_factory=list)  # what the JWKS holds now
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    fetches: int = 0

    def new_key(self, kid: str) -> rsa.RSAPrivateKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.keys[kid] = key
        return key

    def publish(self, *kids: str) -> None:
        """The key set the provider serves from now on (a rotation replaces it)."""
        self.published[:] = [
            {**RSAAlgorithm.to_jwk(self.keys[kid].public_key(), as_dict=True),
             "kid": kid, "use": "sig", "alg": "RS256"}
            for kid in kids
        ]  # fmt: skip

    def token(self, kid: str, sub: str, admin: bool = False) -> str:
        """A token as the provider signs it: RS256 with key `kid`, naming it."""
        now = int(time.time())
        claims = {"sub": sub, "iat": now, "exp": now + 3600, "roles": ["admin"] if admin else []}
        return jwt.encode(claims, self.keys[kid], algorithm="RS256", headers={"kid": kid})


def hs256_by_hand(key: str, claims: dict[str, Any], **header: str) -> str:
    """An HS256 token signed with `key` whatever it is (PyJWT refuses a public key as an
    HMAC secret; an attacker does not ask): the algorithm-confusion attack."""

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    body = {"exp": int(time.time()) + 60, **claims}
    head = json.dumps({"alg": "HS256", "typ": "JWT", **header}, separators=(",", ":"))
    signing = part(head.encode()) + "." + part(json.dumps(body).encode())
    signature = hmac.new(key.encode(), signing.encode(), hashlib.sha256).digest()
    return signing + "." + part(signature)


@contextmanager
def provider() -> Iterator[Provider]:
    """A JWKS endpoint on a free port, stopped when the block ends."""
    found = Provider()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            found.fetches += 1
            body = json.dumps({"keys": found.published}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()
        serving.join(timeout=5)
