#!/usr/bin/env python3
"""tests/oidc_tokens.py — an identity provider in a file, for the OIDC tests.

    oidc_tokens.py keys DIR               RSA and EC P-256 keys (and an attacker's)
                                          in DIR, and DIR/jwks.json with the public
                                          halves of the first two (kids "r1", "e1")
    oidc_tokens.py rotate DIR             a new RSA key "r2"; jwks.json holds only it
    oidc_tokens.py mint DIR ALG KID CLAIMS_JSON [--key NAME] [--header JSON]
                                          a signed compact JWS on stdout; ALG is
                                          RS256, ES256, HS256 (keyed with the RSA
                                          public key's PEM: the confusion attack) or
                                          none; "exp": "+N"/"-N" is relative to now

Uses python3-cryptography (Debian) for keys and signatures.
"""
import base64
import json
import os
import sys
import time

from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_int(n):
    return b64u(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def save(path, key):
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    with open(path, "wb") as f:
        f.write(pem)


def load(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), None)


def jwk(key, kid):
    pub = key.public_key().public_numbers()
    if isinstance(key, rsa.RSAPrivateKey):
        return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64u_int(pub.n), "e": b64u_int(pub.e)}
    return {"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
            "x": b64u(pub.x.to_bytes(32, "big")), "y": b64u(pub.y.to_bytes(32, "big"))}


def write_jwks(d, pairs):
    tmp = os.path.join(d, "jwks.json.tmp")
    with open(tmp, "w") as f:
        json.dump({"keys": [jwk(load(os.path.join(d, name + ".pem")), kid) for name, kid in pairs]}, f)
    os.replace(tmp, os.path.join(d, "jwks.json"))


def keys(d):
    save(os.path.join(d, "rsa.pem"), rsa.generate_private_key(65537, 2048))
    save(os.path.join(d, "ec.pem"), ec.generate_private_key(ec.SECP256R1()))
    save(os.path.join(d, "evil.pem"), rsa.generate_private_key(65537, 2048))
    write_jwks(d, [("rsa", "r1"), ("ec", "e1")])


def rotate(d):
    save(os.path.join(d, "rsa2.pem"), rsa.generate_private_key(65537, 2048))
    write_jwks(d, [("rsa2", "r2")])


def mint(d, alg, kid, claims, key_name=None, header_extra=None):
    now = int(time.time())
    for k in ("exp", "nbf", "iat"):
        v = claims.get(k)
        if isinstance(v, str) and v[:1] in "+-":
            claims[k] = now + int(v)
    header = {"alg": alg, "typ": "JWT"}
    if kid:
        header["kid"] = kid
    header.update(header_extra or {})
    signing_input = (b64u(json.dumps(header).encode()) + "." + b64u(json.dumps(claims).encode())).encode()
    if alg == "none":
        return signing_input.decode() + "."
    name = key_name or {"RS256": "rsa", "HS256": "rsa", "ES256": "ec"}[alg]
    key = load(os.path.join(d, name + ".pem"))
    if alg == "RS256":
        sig = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:  # HS256 keyed with the public key's PEM: what a confused verifier would accept
        pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        h = hmac.HMAC(pem, hashes.SHA256())
        h.update(signing_input)
        sig = h.finalize()
    return signing_input.decode() + "." + b64u(sig)


def main(argv):
    if len(argv) >= 3 and argv[1] == "keys":
        keys(argv[2])
    elif len(argv) >= 3 and argv[1] == "rotate":
        rotate(argv[2])
    elif len(argv) >= 6 and argv[1] == "mint":
        key_name = header = None
        rest = argv[6:]
        while rest:
            if rest[0] == "--key":
                key_name = rest[1]
            elif rest[0] == "--header":
                header = json.loads(rest[1])
            rest = rest[2:]
        print(mint(argv[2], argv[3], argv[4], json.loads(argv[5]), key_name, header))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
