/* gateway/jwt.h — verifying OIDC access tokens (JWTs, RFC 7519) against an
 * issuer's published keys (a JWKS, RFC 7517), so that the gateway can take a
 * token from the site's identity provider as well as its own "loom_..." ones.
 *
 * Only what an access token from a common provider needs, and nothing that
 * lets the token choose how it is checked: compact JWS with alg RS256
 * (RSASSA-PKCS1-v1_5, SHA-256) or ES256 (ECDSA P-256, SHA-256); the key comes
 * from the configured JWKS only (headers such as "jwk", "jku" or "x5u" are
 * ignored), and its type must match the alg ("none", HS256 and the rest are
 * refused, so an RSA public key can never be used as an HMAC secret).  The
 * keys are built once, when the JWKS is parsed; a loom_jwks is read-only
 * afterwards and may be used by any number of threads at once.
 *
 * What a token must hold: "exp" (checked with the policy's leeway), "iss"
 * equal to the policy's issuer, "aud" (a string or an array of strings) with
 * the policy's audience, and a user name in the policy's user claim; "nbf"
 * and "iat" are checked when present.  Dates must be JSON numbers.
 *
 * User names are taken as they are or refused, never rewritten: 1-63 bytes of
 * [A-Za-z0-9._@+-].  Mapping other characters would let two different
 * subjects collide on one loom user (and so on one owner of jobs and models);
 * a provider whose subjects need more should be given a user_claim that fits
 * (e.g. "preferred_username"). */
#ifndef LOOM_GATEWAY_JWT_H
#define LOOM_GATEWAY_JWT_H
#include <stddef.h>
#include <stdint.h>

#define LOOM_JWT_MAX_TOKEN 16384     /* bytes; longer tokens are refused unread */
#define LOOM_JWT_USER_MAX 64         /* user names are 1..63 bytes */
#define LOOM_JWT_GROUP_MAX 256       /* bytes in one group name */
#define LOOM_JWT_GROUPS_MAX 256      /* groups in one token */
#define LOOM_JWKS_MAX_BYTES (1 << 20)
#define LOOM_JWKS_MAX_KEYS 64

/* A set of issuer keys, from a JWKS document: RSA keys (kty "RSA", n, e;
 * 2048 to 8192 bits) and EC P-256 keys (kty "EC", crv "P-256", x, y), each
 * with its "kid" (may be absent).  Keys with a "use" other than "sig", an
 * "alg" other than RS256/ES256, another kty, or (without "alg") another curve
 * are skipped; a key that would be used but is malformed is an error, and so
 * is a JWKS with no usable key. */
typedef struct loom_jwks loom_jwks;

/* Parse len bytes of JSON {"keys": [...]}.  0, or LOOM_EINVAL with the reason
 * in err (errcap bytes, NUL-terminated; err may be NULL), or LOOM_ENOMEM. */
int loom_jwks_parse(const char *json, size_t len, loom_jwks **out, char *err, size_t errcap);
/* The same from a file (at most LOOM_JWKS_MAX_BYTES); LOOM_EIO when it cannot be read. */
int loom_jwks_load_file(const char *path, loom_jwks **out, char *err, size_t errcap);
/* Number of usable keys. */
int loom_jwks_count(const loom_jwks *k);
/* Free and set *k to NULL; NULL and *k == NULL are fine. */
void loom_jwks_free(loom_jwks **k);

/* What a token must satisfy.  Zero fields take the defaults in brackets. */
typedef struct loom_jwt_policy {
    const char *issuer;          /* required: "iss" must equal it */
    const char *audience;        /* required: "aud" (string or array) must contain it */
    const char *user_claim;      /* the claim that names the user ["sub"]; no fallback */
    const char *groups_claim;    /* e.g. "groups" or "eduperson_entitlement"; NULL: none */
    int leeway_s;                /* clock skew allowed for exp, nbf and iat, 0..86400 [60];
                                    negative: none */
    int64_t now;                 /* seconds since the epoch [time(NULL)]; tests set it */
} loom_jwt_policy;

/* Who a token names.  Groups come from groups_claim (an array of strings or
 * one string; absent: none): each 1..256 bytes without control characters,
 * at most 256 of them; a token that breaks these is refused, not cut. */
typedef struct loom_jwt_identity {
    char user[LOOM_JWT_USER_MAX];
    char **groups;               /* ngroups strings, owned; NULL when none */
    int ngroups;
    int64_t exp;                 /* the token's "exp" */
} loom_jwt_identity;

/* Verify a token of len bytes (its NULs included: a token with one is
 * refused) and fill *out.  0; LOOM_EAUTH when the token is refused, with the
 * reason in err ("token expired", "wrong audience", "unknown key id", "bad
 * signature", ...) — safe to show the client; LOOM_EINVAL for bad arguments
 * or policy; LOOM_ENOMEM.  *out is zeroed first and holds nothing to free
 * unless 0 is returned. */
int loom_jwt_verify(const loom_jwks *keys, const loom_jwt_policy *p, const char *token, size_t len,
                    loom_jwt_identity *out, char *err, size_t errcap);
/* Free the groups and zero *id; a zeroed identity is fine. */
void loom_jwt_identity_free(loom_jwt_identity *id);

/* 1 when token (NUL-terminated) has the shape of a JWT — three non-empty
 * dot-separated parts, the first starting with "eyJ" (base64 of '{"') — so the
 * gateway can tell it from its own "loom_..." tokens; 0 otherwise.  Says
 * nothing about validity. */
int loom_jwt_looks_like(const char *token);
#endif
