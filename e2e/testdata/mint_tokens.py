"""Mints test tokens with PyJWT, an implementation independent of ours.

Usage: mint_tokens.py KEYS_DIR NOW
Prints one JSON object a line: {"alg", "case", "token"}. The cases are what
the verifier must say of them: valid, expired, not_yet_valid, wrong_issuer,
wrong_audience, bad_signature.
"""
import json
import sys

import jwt

keys_dir, now = sys.argv[1], int(sys.argv[2])


def key(name):
    with open(f"{keys_dir}/{name}", "rb") as f:
        return f.read()


SIGNERS = [
    ("RS256", "rsa.pem", "rsa-1"), ("RS384", "rsa.pem", "rsa-1"), ("RS512", "rsa.pem", "rsa-1"),
    ("PS256", "rsa.pem", "rsa-1"), ("PS384", "rsa.pem", "rsa-1"), ("PS512", "rsa.pem", "rsa-1"),
    ("ES256", "ec256.pem", "ec-256"), ("ES384", "ec384.pem", "ec-384"), ("EdDSA", "ed25519.pem", "ed-1"),
]
BASE = {"iss": "https://idp.example", "aud": "api", "sub": "py", "iat": now - 5, "exp": now + 300}
CASES = {
    "valid": {},
    "expired": {"exp": now - 3600},
    "not_yet_valid": {"nbf": now + 3600},
    "wrong_issuer": {"iss": "https://elsewhere.example"},
    "wrong_audience": {"aud": ["other"]},
}

for alg, pem, kid in SIGNERS:
    for case, change in CASES.items():
        token = jwt.encode({**BASE, **change}, key(pem), algorithm=alg, headers={"kid": kid})
        print(json.dumps({"alg": alg, "case": case, "token": token}))
    # Signed by another key under this key's kid: RSA has a second test key.
    if alg.startswith(("RS", "PS")):
        token = jwt.encode(BASE, key("rsa-other.pem"), algorithm=alg, headers={"kid": kid})
        print(json.dumps({"alg": alg, "case": "bad_signature", "token": token}))
    # A payload swapped under a valid signature.
    header, _, signature = jwt.encode(BASE, key(pem), algorithm=alg, headers={"kid": kid}).split(".")
    forged = jwt.utils.base64url_encode(json.dumps({**BASE, "sub": "root"}).encode()).decode()
    print(json.dumps({"alg": alg, "case": "bad_signature", "token": f"{header}.{forged}.{signature}"}))
