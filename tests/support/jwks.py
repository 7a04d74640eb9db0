"""A local OpenID Connect provider for tests, on 127.0.0.1, served from a thread (the
parts fetch from other processes): RSA keys and their JWKS endpoint, tokens signed as the
provider signs them, and the authorization code flow with PKCE a browser signs in by (a
discovery document, a sign-in page, a token endpoint that checks the code verifier)."""

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


@dataclass
class Provider:
    url: str = ""
    published: list[dict[str, Any]] = field(default_factory=list)  # what the JWKS holds now
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    fetches: int = 0
    issuer: str = ""
    codes: dict[str, dict[str, str]] = field(default_factory=dict)  # given, not yet used

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

    def token(self, kid: str, sub: str, admin: bool = False, **claims: object) -> str:
        """A token as the provider signs it: RS256 with key `kid`, naming it."""
        now = int(time.time())
        body = {"sub": sub, "iat": now, "exp": now + 3600, "roles": ["admin"] if admin else []}
        return jwt.encode({**body, **claims}, self.keys[kid], "RS256", headers={"kid": kid})

    def discovery(self) -> dict[str, str]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": self.url,
        }

    def approve(self, query: dict[str, str]) -> str:
        """Where the browser goes once the person said who they are: back to the app with
        a code for them."""
        code = secrets.token_urlsafe(16)
        self.codes[code] = query
        back = {"code": code, "state": query["state"]}
        return f"{query['redirect_uri']}?{urlencode(back)}"

    def exchange(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The token endpoint: a code for tokens, once, to the client and redirect it was
        given for, with the verifier whose S256 is the challenge it was given with."""
        asked = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "").encode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if (
            asked is None
            or form.get("grant_type") != "authorization_code"
            or form.get("client_id") != asked["client_id"]
            or form.get("redirect_uri") != asked["redirect_uri"]
            or challenge.decode() != asked["code_challenge"]
        ):
            return 400, {"error": "invalid_grant", "error_description": "not this code"}
        kid = self.published[-1]["kid"]
        person = asked["username"]
        id_token = self.token(
            kid, person, asked.get("admin") == "on", iss=self.issuer, aud=asked["client_id"],
            nonce=asked["nonce"], preferred_username=person,
        )  # fmt: skip
        opaque = secrets.token_urlsafe(24)  # for the provider alone: the app sends the ID token
        return 200, {"access_token": opaque, "token_type": "Bearer", "id_token": id_token}


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


SIGN_IN_PAGE = """<!doctype html><html lang="en"><title>Provider</title><main>
<form action="/approve"><label>Username <input name="username"></label>
<label><input type="checkbox" name="admin"> Admin role</label>{hidden}
<button>Continue</button></form></main></html>"""


@contextmanager
def provider() -> Iterator[Provider]:
    """The provider on a free port, stopped when the block ends."""
    found = Provider()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path, _, raw = self.path.partition("?")
            query = {k: v[0] for k, v in parse_qs(raw).items()}
            if path == "/.well-known/openid-configuration":
                return self.answer(200, found.discovery())
            if path == "/authorize":
                hidden = "".join(
                    f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                    for k, v in query.items()
                )
                return self.answer(200, SIGN_IN_PAGE.format(hidden=hidden))
            if path == "/approve":
                self.send_response(302)
                self.send_header("Location", found.approve(query))
                return self.end_headers()
            found.fetches += 1
            self.answer(200, {"keys": found.published})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            self.answer(*found.exchange(form))

        def answer(self, status: int, body: object) -> None:
            page = isinstance(body, str)
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if page else "application/json")
            self.send_header("Access-Control-Allow-Origin", "*")  # the app's page asks
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    found.url = f"{found.issuer}/.well-known/jwks.json"
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()
        serving.join(timeout=5)
