/* gateway/jwt.c — owns the checking of OIDC access tokens: the issuer's keys
 * (a JWKS turned into OpenSSL keys once, at parse time) and the verification
 * of one token against them and a policy (gateway/jwt.h says what is
 * accepted).
 *
 * Design: the token is untrusted input, so everything is bounded before it is
 * decoded (total length, strict base64url without padding or stray bits, JSON
 * without duplicate names) and the steps run in an order where nothing from
 * the payload is looked at before the signature over it has been checked.  The
 * header picks only among the configured keys, and the key's own type must
 * fit its alg, which rules out the "alg confusion" attacks (none, HS256 with a
 * public key as secret).  Keys are built with OpenSSL 3's provider APIs
 * (OSSL_PARAM_BLD + EVP_PKEY_fromdata) and validated (EVP_PKEY_public_check:
 * the EC point is on the curve), then never modified: a loom_jwks is shared by
 * threads without a lock.  ES256 signatures arrive as JWS's raw R||S and are
 * re-encoded as the DER that OpenSSL verifies. */
#define OPENSSL_API_COMPAT 30000
#define OPENSSL_NO_DEPRECATED
#include "gateway/jwt.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/errf.h"
#include "base/file.h"
#include "loom/loom.h"

#define MAX_KID 256
#define MAX_LEEWAY 86400
#define DEFAULT_LEEWAY 60
#define MAX_DATE 1000000000000.0   /* NumericDate beyond ~year 33000 is refused */
#define ES256_SIG_LEN 64
#define P256_COORD_LEN 32
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192

typedef enum { KEY_RSA, KEY_EC } key_type;

typedef struct jwk {
    char *kid;                   /* NULL when the JWKS gave none */
    key_type type;
    EVP_PKEY *pkey;
} jwk;

struct loom_jwks {
    jwk *keys;
    int nkeys;
};

/* ---- base64url (RFC 4648 §5), strict ---------------------------------- */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Decode n characters: the url-safe alphabet only, no padding, and the unused
 * low bits of the last character zero (one encoding per byte string).  *out
 * is malloc'd (at least one byte, so an empty result is not NULL).  0,
 * LOOM_EINVAL (malformed) or LOOM_ENOMEM. */
static int b64url_decode(const char *s, size_t n, unsigned char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (n % 4 == 1) return LOOM_EINVAL;
    unsigned char *buf = malloc(n / 4 * 3 + 3);
    if (!buf) return LOOM_ENOMEM;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0) {
            free(buf);
            return LOOM_EINVAL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) {              /* stray bits in the last character */
        free(buf);
        return LOOM_EINVAL;
    }
    *out = buf;
    *outlen = o;
    return 0;
}

/* ---- keys ------------------------------------------------------------- */

static void jwk_clear(jwk *k)
{
    free(k->kid);
    EVP_PKEY_free(k->pkey);
    memset(k, 0, sizeof(*k));
}

/* The key built from params, and validated as a public key of its type. */
static EVP_PKEY *pkey_from_params(const char *type, const OSSL_PARAM *params)
{
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, (OSSL_PARAM *)params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    if (pkey) {
        EVP_PKEY_CTX *check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (!check || EVP_PKEY_public_check(check) != 1) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
        EVP_PKEY_CTX_free(check);
    }
    ERR_clear_error();
    return pkey;
}

/* A base64url member of a key, decoded; LOOM_EINVAL with the reason. */
static int key_member(const json_t *k, const char *name, size_t idx, unsigned char **buf, size_t *n,
                      char *err, size_t errcap)
{
    const char *s = json_string_value(json_object_get(k, name));
    if (!s) return loom__errf(err, errcap, LOOM_EINVAL, "JWKS key %zu has no \"%s\"", idx, name);
    int rc = b64url_decode(s, strlen(s), buf, n);
    if (rc == LOOM_EINVAL || (!rc && *n == 0)) {
        free(*buf);
        *buf = NULL;
        return loom__errf(err, errcap, LOOM_EINVAL, "JWKS key %zu: \"%s\" is not base64url", idx, name);
    }
    return rc;
}

static int rsa_key(const json_t *k, size_t idx, EVP_PKEY **out, char *err, size_t errcap)
{
    unsigned char *nb = NULL, *eb = NULL;
    size_t nlen = 0, elen = 0;
    BIGNUM *n = NULL, *e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    int rc = key_member(k, "n", idx, &nb, &nlen, err, errcap);
    if (!rc) rc = key_member(k, "e", idx, &eb, &elen, err, errcap);
    if (rc) goto done;
    rc = LOOM_ENOMEM;
    if (!(n = BN_bin2bn(nb, (int)nlen, NULL)) || !(e = BN_bin2bn(eb, (int)elen, NULL))) goto done;
    int bits = BN_num_bits(n);
    if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS) {
        rc = loom__errf(err, errcap, LOOM_EINVAL, "JWKS key %zu: an RSA key of %d bits (%d to %d are taken)",
                        idx, bits, RSA_MIN_BITS, RSA_MAX_BITS);
        goto done;
    }
    if (!BN_is_odd(e) || BN_num_bits(e) < 2 || BN_num_bits(e) > 64) {
        rc = loom__errf(err, errcap, LOOM_EINVAL, "JWKS key %zu: a bad RSA exponent", idx);
        goto done;
    }
    if (!(bld = OSSL_PARAM_BLD_new()) || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) || !(params = OSSL_PARAM_BLD_to_param(bld)))
        goto done;
    *out = pkey_from_params("RSA", params);
    rc = *out ? 0 : loom__errf(err, errcap, LOOM_EINVAL, "JWKS key %zu: not a valid RSA public key", idx);
done:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    free(nb);
    free(eb);
    ERR_clear_error();
    return rc;
}

static int ec_key(const json_t *k, size_t idx, EVP_PKEY **out, char *err, size_t errcap)
{
    unsigned char *xb = NULL, *yb = NULL;
    size_t xlen = 0, ylen = 0;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    unsigned char point[1 + 2 * P256_COORD_LEN];
    int rc = key_member(k, "x", idx, &xb, &xlen, err, errcap);
    if (!rc) rc = key_member(k, "y", idx, &yb, &ylen, err, errcap);
    if (rc) goto done;
    if (xlen != P256_COORD_LEN || ylen != P256_COORD_LEN) {
        rc = loom__errf(err, errcap, LOOM_EINVAL, "JWKS key %zu: x and y of a P-256 key are 32 bytes each",
                        idx);
        goto done;
    }
    point[0] = 0x04;             /* uncompressed point */
    memcpy(point + 1, xb, P256_COORD_LEN);
    memcpy(point + 1 + P256_COORD_LEN, yb, P256_COORD_LEN);
    rc = LOOM_ENOMEM;
    if (!(bld = OSSL_PARAM_BLD_new()) ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)) ||
        !(params = OSSL_PARAM_BLD_to_param(bld)))
        goto done;
    *out = pkey_from_params("EC", params);
    rc = *out ? 0 : loom__errf(err, errcap, LOOM_EINVAL, "JWKS key %zu: not a point on P-256", idx);
done:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    free(xb);
    free(yb);
    ERR_clear_error();
    return rc;
}

/* Whether key idx is one to use: 1 yes (type set), 0 skip, or an error. */
static int key_wanted(const json_t *k, size_t idx, key_type *type, char *err, size_t errcap)
{
    const char *kty = json_string_value(json_object_get(k, "kty"));
    if (!kty) return loom__errf(err, errcap, LOOM_EINVAL, "JWKS key %zu has no \"kty\"", idx);
    const json_t *use = json_object_get(k, "use");
    if (use && (!json_is_string(use) || strcmp(json_string_value(use), "sig") != 0)) return 0;
    const json_t *algj = json_object_get(k, "alg");
    if (algj && !json_is_string(algj))
        return loom__errf(err, errcap, LOOM_EINVAL, "JWKS key %zu: \"alg\" is not a string", idx);
    const char *alg = json_string_value(algj);
    if (alg && strcmp(alg, "RS256") != 0 && strcmp(alg, "ES256") != 0) return 0;
    int is_rsa = !strcmp(kty, "RSA"), is_ec = !strcmp(kty, "EC");
    if (alg && (!strcmp(alg, "RS256") ? !is_rsa : !is_ec))
        return loom__errf(err, errcap, LOOM_EINVAL, "JWKS key %zu: alg %s does not fit kty %s", idx, alg,
                          kty);
    if (!is_rsa && !is_ec) return 0;
    if (is_ec) {
        const char *crv = json_string_value(json_object_get(k, "crv"));
        if (!crv) return loom__errf(err, errcap, LOOM_EINVAL, "JWKS key %zu has no \"crv\"", idx);
        if (strcmp(crv, "P-256") != 0) {
            if (!alg) return 0;  /* e.g. a P-384 key for ES384 that does not say so */
            return loom__errf(err, errcap, LOOM_EINVAL, "JWKS key %zu: ES256 wants crv P-256", idx);
        }
    }
    *type = is_rsa ? KEY_RSA : KEY_EC;
    return 1;
}

/* Key idx into *out: 0 (built), 1 (skipped) or an error. */
static int parse_key(const json_t *k, size_t idx, jwk *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(k)) return loom__errf(err, errcap, LOOM_EINVAL, "JWKS key %zu is not an object", idx);
    int rc = key_wanted(k, idx, &out->type, err, errcap);
    if (rc <= 0) return rc == 0 ? 1 : rc;
    const json_t *kid = json_object_get(k, "kid");
    if (kid) {
        const char *s = json_string_value(kid);
        if (!s || !*s || json_string_length(kid) != strlen(s) || strlen(s) >= MAX_KID)
            return loom__errf(err, errcap, LOOM_EINVAL, "JWKS key %zu: \"kid\" is not a string of 1-%d bytes",
                              idx, MAX_KID - 1);
        if (!(out->kid = strdup(s))) return LOOM_ENOMEM;
    }
    rc = out->type == KEY_RSA ? rsa_key(k, idx, &out->pkey, err, errcap)
                              : ec_key(k, idx, &out->pkey, err, errcap);
    if (rc) jwk_clear(out);
    return rc;
}

void loom_jwks_free(loom_jwks **k)
{
    if (!k || !*k) return;
    for (int i = 0; i < (*k)->nkeys; i++) jwk_clear(&(*k)->keys[i]);
    free((*k)->keys);
    free(*k);
    *k = NULL;
}

static int parse_keys(const json_t *arr, loom_jwks *set, char *err, size_t errcap)
{
    size_t n = json_array_size(arr);
    if (n > LOOM_JWKS_MAX_KEYS)
        return loom__errf(err, errcap, LOOM_EINVAL, "JWKS has %zu keys, more than %d", n, LOOM_JWKS_MAX_KEYS);
    if (n && !(set->keys = calloc(n, sizeof(jwk)))) return LOOM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        int rc = parse_key(json_array_get(arr, i), i, &set->keys[set->nkeys], err, errcap);
        if (rc < 0) return rc;
        if (rc == 0) set->nkeys++;
    }
    if (set->nkeys == 0)
        return loom__errf(err, errcap, LOOM_EINVAL, "JWKS has no usable RS256 or ES256 signing key");
    return 0;
}

int loom_jwks_parse(const char *json, size_t len, loom_jwks **out, char *err, size_t errcap)
{
    if (err && errcap) err[0] = 0;
    if (!out) return loom__errf(err, errcap, LOOM_EINVAL, "no place for the JWKS");
    *out = NULL;
    if (!json) return loom__errf(err, errcap, LOOM_EINVAL, "no JWKS");
    if (len > LOOM_JWKS_MAX_BYTES)
        return loom__errf(err, errcap, LOOM_EINVAL, "JWKS is over %d bytes", LOOM_JWKS_MAX_BYTES);
    json_error_t jerr;
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) return loom__errf(err, errcap, LOOM_EINVAL, "JWKS is not JSON: %s (line %d)", jerr.text, jerr.line);
    const json_t *arr = json_object_get(doc, "keys");
    int rc;
    loom_jwks *set = NULL;
    if (!json_is_array(arr)) {
        rc = loom__errf(err, errcap, LOOM_EINVAL, "JWKS has no \"keys\" array");
    } else if (!(set = calloc(1, sizeof(*set)))) {
        rc = LOOM_ENOMEM;
    } else {
        rc = parse_keys(arr, set, err, errcap);
    }
    json_decref(doc);
    if (rc) loom_jwks_free(&set);
    *out = set;
    return rc;
}

int loom_jwks_load_file(const char *path, loom_jwks **out, char *err, size_t errcap)
{
    if (out) *out = NULL;
    if (!path || !out) return loom__errf(err, errcap, LOOM_EINVAL, "no JWKS file");
    char *text = NULL;
    size_t len = 0;
    int rc = loom__file_read(path, LOOM_JWKS_MAX_BYTES, &text, &len);
    if (rc == -EFBIG) return loom__errf(err, errcap, LOOM_EINVAL, "%s: over %d bytes", path, LOOM_JWKS_MAX_BYTES);
    if (rc == -ENOMEM) return LOOM_ENOMEM;
    if (rc) return loom__errf(err, errcap, LOOM_EIO, "%s: %s", path, strerror(-rc));
    rc = loom_jwks_parse(text, len, out, err, errcap);
    free(text);
    if (rc && err && errcap) {
        char why[256];
        loom__snprintf(why, sizeof(why), "%s", err);
        loom__errf(err, errcap, rc, "%s: %s", path, why);
    }
    return rc;
}

int loom_jwks_count(const loom_jwks *k)
{
    return k ? k->nkeys : 0;
}

/* ---- the token's parts ------------------------------------------------ */

typedef struct token_parts {
    const char *signed_part;     /* header "." payload, as sent */
    size_t signed_len;
    const char *header, *payload, *sig;
    size_t header_len, payload_len, sig_len;
} token_parts;

static int split_token(const char *t, size_t len, token_parts *tp)
{
    const char *d1 = memchr(t, '.', len);
    if (!d1) return -1;
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - t));
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - t))) return -1;
    tp->signed_part = t;
    tp->signed_len = (size_t)(d2 - t);
    tp->header = t;
    tp->header_len = (size_t)(d1 - t);
    tp->payload = d1 + 1;
    tp->payload_len = (size_t)(d2 - d1 - 1);
    tp->sig = d2 + 1;
    tp->sig_len = len - (size_t)(d2 + 1 - t);
    return tp->header_len && tp->payload_len && tp->sig_len ? 0 : -1;
}

/* A base64url part holding a JSON object; LOOM_EAUTH with what is wrong. */
static int decode_json_part(const char *s, size_t n, const char *what, json_t **out, char *err, size_t errcap)
{
    *out = NULL;
    unsigned char *raw = NULL;
    size_t rawlen = 0;
    int rc = b64url_decode(s, n, &raw, &rawlen);
    if (rc == LOOM_ENOMEM) return rc;
    if (rc) return loom__errf(err, errcap, LOOM_EAUTH, "malformed token: the %s is not base64url", what);
    json_t *j = json_loadb((const char *)raw, rawlen, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (!json_is_object(j)) {
        json_decref(j);
        return loom__errf(err, errcap, LOOM_EAUTH, "malformed token: the %s is not a JSON object", what);
    }
    *out = j;
    return 0;
}

typedef enum { ALG_RS256, ALG_ES256 } jwt_alg;

/* The header's alg and kid (kid points into hdr). */
static int check_header(const json_t *hdr, jwt_alg *alg, const char **kid, char *err, size_t errcap)
{
    const char *a = json_string_value(json_object_get(hdr, "alg"));
    if (!a) return loom__errf(err, errcap, LOOM_EAUTH, "malformed token: no alg in the header");
    if (!strcmp(a, "RS256")) *alg = ALG_RS256;
    else if (!strcmp(a, "ES256")) *alg = ALG_ES256;
    else if (!strcmp(a, "none")) return loom__errf(err, errcap, LOOM_EAUTH, "unsigned token (alg none) refused");
    else return loom__errf(err, errcap, LOOM_EAUTH, "unsupported alg (RS256 and ES256 are taken)");
    if (json_object_get(hdr, "crit"))
        return loom__errf(err, errcap, LOOM_EAUTH, "unsupported critical header extension");
    const json_t *k = json_object_get(hdr, "kid");
    *kid = NULL;
    if (k) {
        *kid = json_string_value(k);
        if (!*kid || json_string_length(k) != strlen(*kid))
            return loom__errf(err, errcap, LOOM_EAUTH, "malformed token: kid is not a string");
    }
    return 0;
}

/* ---- signatures ------------------------------------------------------- */

/* JWS's R||S (32 bytes each) as the DER ECDSA-Sig-Value OpenSSL verifies. */
static int es256_to_der(const unsigned char *raw, unsigned char **der, size_t *derlen)
{
    *der = NULL;
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, P256_COORD_LEN, NULL);
    BIGNUM *s = BN_bin2bn(raw + P256_COORD_LEN, P256_COORD_LEN, NULL);
    int rc = LOOM_ENOMEM;
    if (sig && r && s && ECDSA_SIG_set0(sig, r, s)) {
        r = s = NULL;            /* owned by sig now */
        unsigned char *p = NULL;
        int n = i2d_ECDSA_SIG(sig, &p);
        if (n > 0) {
            *der = p;
            *derlen = (size_t)n;
            rc = 0;
        }
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    ERR_clear_error();
    return rc;
}

/* 1 when sig is pkey's SHA-256 signature of msg; 0 when not; LOOM_ENOMEM. */
static int verify_with(EVP_PKEY *pkey, const char *msg, size_t mlen, const unsigned char *sig, size_t slen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md) return LOOM_ENOMEM;
    int ok = EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pkey, NULL) == 1 &&
             EVP_DigestVerify(md, sig, slen, (const unsigned char *)msg, mlen) == 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return ok;
}

/* Try the keys the header allows: those with its kid, or without a kid every
 * key of the alg's type.  0 when one verifies; LOOM_EAUTH with why not. */
static int check_signature(const loom_jwks *keys, jwt_alg alg, const char *kid, const token_parts *tp,
                           const unsigned char *sig, size_t slen, char *err, size_t errcap)
{
    key_type want = alg == ALG_RS256 ? KEY_RSA : KEY_EC;
    int named = 0, tried = 0;
    for (int i = 0; i < keys->nkeys; i++) {
        const jwk *k = &keys->keys[i];
        if (kid && (!k->kid || strcmp(k->kid, kid) != 0)) continue;
        named++;
        if (k->type != want) continue;
        tried++;
        int ok = verify_with(k->pkey, tp->signed_part, tp->signed_len, sig, slen);
        if (ok < 0) return ok;
        if (ok) return 0;
    }
    if (kid && !named) return loom__errf(err, errcap, LOOM_EAUTH, "unknown key id");
    if (!tried)
        return loom__errf(err, errcap, LOOM_EAUTH, kid ? "the key named by kid is not an %s key"
                                                        : "no %s key to verify with",
                          alg == ALG_RS256 ? "RS256" : "ES256");
    return loom__errf(err, errcap, LOOM_EAUTH, "bad signature");
}

static int verify_signature(const loom_jwks *keys, const json_t *hdr, const token_parts *tp, char *err,
                            size_t errcap)
{
    jwt_alg alg = ALG_RS256;
    const char *kid = NULL;
    int rc = check_header(hdr, &alg, &kid, err, errcap);
    if (rc) return rc;
    unsigned char *sig = NULL, *der = NULL;
    size_t slen = 0, derlen = 0;
    rc = b64url_decode(tp->sig, tp->sig_len, &sig, &slen);
    if (rc == LOOM_EINVAL) return loom__errf(err, errcap, LOOM_EAUTH, "malformed token: the signature is not base64url");
    if (rc) return rc;
    if (alg == ALG_ES256) {
        if (slen != ES256_SIG_LEN) {
            rc = loom__errf(err, errcap, LOOM_EAUTH, "bad signature: an ES256 signature is %d bytes, not %zu",
                            ES256_SIG_LEN, slen);
        } else if (!(rc = es256_to_der(sig, &der, &derlen))) {
            rc = check_signature(keys, alg, kid, tp, der, derlen, err, errcap);
        }
    } else {
        rc = check_signature(keys, alg, kid, tp, sig, slen, err, errcap);
    }
    OPENSSL_free(der);
    free(sig);
    return rc;
}

/* ---- claims ----------------------------------------------------------- */

typedef struct clock_rules {
    int64_t now;
    int64_t leeway;
} clock_rules;

/* A NumericDate claim: absent (*present = 0), or a number in range, rounded
 * the strict way (up: round_up).  LOOM_EAUTH when it is not. */
static int date_claim(const json_t *claims, const char *name, int round_up, int64_t *out, int *present,
                      char *err, size_t errcap)
{
    const json_t *v = json_object_get(claims, name);
    *present = v != NULL;
    *out = 0;
    if (!v) return 0;
    double d = json_number_value(v);
    if (!json_is_number(v) || !(d >= 0 && d <= MAX_DATE))
        return loom__errf(err, errcap, LOOM_EAUTH, "malformed token: \"%s\" is not a date in seconds", name);
    int64_t t = (int64_t)d;
    if (round_up && (double)t < d) t++;
    *out = t;
    return 0;
}

static int check_dates(const json_t *claims, const clock_rules *c, int64_t *exp_out, char *err, size_t errcap)
{
    int64_t exp, nbf, iat;
    int has_exp, has_nbf, has_iat;
    int rc = date_claim(claims, "exp", 0, &exp, &has_exp, err, errcap);
    if (!rc) rc = date_claim(claims, "nbf", 1, &nbf, &has_nbf, err, errcap);
    if (!rc) rc = date_claim(claims, "iat", 1, &iat, &has_iat, err, errcap);
    if (rc) return rc;
    if (!has_exp) return loom__errf(err, errcap, LOOM_EAUTH, "token has no expiry (exp)");
    if (c->now >= exp + c->leeway) return loom__errf(err, errcap, LOOM_EAUTH, "token expired");
    if (has_nbf && c->now + c->leeway < nbf) return loom__errf(err, errcap, LOOM_EAUTH, "token not yet valid");
    if (has_iat && iat > c->now + c->leeway)
        return loom__errf(err, errcap, LOOM_EAUTH, "token issued in the future");
    *exp_out = exp;
    return 0;
}

static int check_issuer_audience(const json_t *claims, const loom_jwt_policy *p, char *err, size_t errcap)
{
    const json_t *iss = json_object_get(claims, "iss");
    if (!json_is_string(iss)) return loom__errf(err, errcap, LOOM_EAUTH, "token has no issuer (iss)");
    if (json_string_length(iss) != strlen(p->issuer) || strcmp(json_string_value(iss), p->issuer) != 0)
        return loom__errf(err, errcap, LOOM_EAUTH, "wrong issuer");
    const json_t *aud = json_object_get(claims, "aud");
    if (!aud) return loom__errf(err, errcap, LOOM_EAUTH, "token has no audience (aud)");
    size_t n = json_is_array(aud) ? json_array_size(aud) : 1;
    if (!json_is_array(aud) && !json_is_string(aud))
        return loom__errf(err, errcap, LOOM_EAUTH, "malformed token: aud is not a string or an array");
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *a = json_is_array(aud) ? json_array_get(aud, i) : aud;
        if (!json_is_string(a))
            return loom__errf(err, errcap, LOOM_EAUTH, "malformed token: aud holds a non-string");
        if (json_string_length(a) == strlen(p->audience) && !strcmp(json_string_value(a), p->audience))
            found = 1;
    }
    return found ? 0 : loom__errf(err, errcap, LOOM_EAUTH, "wrong audience");
}

static int user_char_ok(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '@' || c == '+' || c == '-';
}

static int take_user(const json_t *claims, const char *claim, char *user, char *err, size_t errcap)
{
    const json_t *v = json_object_get(claims, claim);
    if (!v) return loom__errf(err, errcap, LOOM_EAUTH, "token has no user claim \"%s\"", claim);
    if (!json_is_string(v)) return loom__errf(err, errcap, LOOM_EAUTH, "user claim \"%s\" is not a string", claim);
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0) return loom__errf(err, errcap, LOOM_EAUTH, "user claim \"%s\" is empty", claim);
    if (n >= LOOM_JWT_USER_MAX)
        return loom__errf(err, errcap, LOOM_EAUTH, "user claim \"%s\" is over %d bytes", claim,
                          LOOM_JWT_USER_MAX - 1);
    for (size_t i = 0; i < n; i++)
        if (!user_char_ok((unsigned char)s[i]))
            return loom__errf(err, errcap, LOOM_EAUTH,
                              "user claim \"%s\" has characters outside [A-Za-z0-9._@+-]", claim);
    memcpy(user, s, n);
    user[n] = 0;
    return 0;
}

static int group_ok(const json_t *g)
{
    if (!json_is_string(g)) return 0;
    size_t n = json_string_length(g);
    const unsigned char *s = (const unsigned char *)json_string_value(g);
    if (n == 0 || n > LOOM_JWT_GROUP_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] == 0x7f) return 0;
    return 1;
}

static int take_groups(const json_t *claims, const char *claim, loom_jwt_identity *id, char *err, size_t errcap)
{
    const json_t *v = claim ? json_object_get(claims, claim) : NULL;
    if (!v) return 0;
    int one = json_is_string(v);
    if (!one && !json_is_array(v))
        return loom__errf(err, errcap, LOOM_EAUTH, "groups claim \"%s\" is not a string or an array", claim);
    size_t n = one ? 1 : json_array_size(v);
    if (n > LOOM_JWT_GROUPS_MAX)
        return loom__errf(err, errcap, LOOM_EAUTH, "groups claim \"%s\" has over %d groups", claim,
                          LOOM_JWT_GROUPS_MAX);
    if (n == 0) return 0;
    if (!(id->groups = calloc(n, sizeof(char *)))) return LOOM_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const json_t *g = one ? v : json_array_get(v, i);
        if (!group_ok(g))
            return loom__errf(err, errcap, LOOM_EAUTH,
                              "groups claim \"%s\": a group that is not a string of 1-%d printable bytes",
                              claim, LOOM_JWT_GROUP_MAX);
        if (!(id->groups[i] = strdup(json_string_value(g)))) return LOOM_ENOMEM;
        id->ngroups++;
    }
    return 0;
}

static int check_claims(const json_t *claims, const loom_jwt_policy *p, const clock_rules *c,
                        loom_jwt_identity *out, char *err, size_t errcap)
{
    int rc = check_dates(claims, c, &out->exp, err, errcap);
    if (!rc) rc = check_issuer_audience(claims, p, err, errcap);
    if (!rc) rc = take_user(claims, p->user_claim ? p->user_claim : "sub", out->user, err, errcap);
    if (!rc) rc = take_groups(claims, p->groups_claim, out, err, errcap);
    return rc;
}

/* ---- verify ----------------------------------------------------------- */

static int policy_clock(const loom_jwt_policy *p, clock_rules *c, char *err, size_t errcap)
{
    if (!p->issuer || !*p->issuer || !p->audience || !*p->audience)
        return loom__errf(err, errcap, LOOM_EINVAL, "the JWT policy needs an issuer and an audience");
    if (p->user_claim && !*p->user_claim)
        return loom__errf(err, errcap, LOOM_EINVAL, "the JWT policy's user claim is empty");
    if (p->leeway_s > MAX_LEEWAY)
        return loom__errf(err, errcap, LOOM_EINVAL, "the JWT policy's leeway is over %d s", MAX_LEEWAY);
    c->leeway = p->leeway_s < 0 ? 0 : p->leeway_s == 0 ? DEFAULT_LEEWAY : p->leeway_s;
    c->now = p->now ? p->now : (int64_t)time(NULL);
    if (c->now < 0 || c->now > (int64_t)MAX_DATE)
        return loom__errf(err, errcap, LOOM_EINVAL, "the JWT policy's clock is out of range");
    return 0;
}

int loom_jwt_verify(const loom_jwks *keys, const loom_jwt_policy *p, const char *token, size_t len,
                    loom_jwt_identity *out, char *err, size_t errcap)
{
    if (err && errcap) err[0] = 0;
    if (out) memset(out, 0, sizeof(*out));
    if (!keys || !p || !token || !out) return loom__errf(err, errcap, LOOM_EINVAL, "missing argument");
    clock_rules clock = {0, 0};
    int rc = policy_clock(p, &clock, err, errcap);
    if (rc) return rc;
    if (len > LOOM_JWT_MAX_TOKEN)
        return loom__errf(err, errcap, LOOM_EAUTH, "token over %d bytes", LOOM_JWT_MAX_TOKEN);
    token_parts tp;
    if (memchr(token, 0, len) || split_token(token, len, &tp))
        return loom__errf(err, errcap, LOOM_EAUTH, "malformed token: not three base64url parts");
    json_t *hdr = NULL, *claims = NULL;
    rc = decode_json_part(tp.header, tp.header_len, "header", &hdr, err, errcap);
    if (!rc) rc = verify_signature(keys, hdr, &tp, err, errcap);
    if (!rc) rc = decode_json_part(tp.payload, tp.payload_len, "payload", &claims, err, errcap);
    if (!rc) rc = check_claims(claims, p, &clock, out, err, errcap);
    json_decref(hdr);
    json_decref(claims);
    if (rc) loom_jwt_identity_free(out);
    return rc;
}

void loom_jwt_identity_free(loom_jwt_identity *id)
{
    if (!id) return;
    for (int i = 0; i < id->ngroups; i++) free(id->groups[i]);
    free(id->groups);
    memset(id, 0, sizeof(*id));
}

int loom_jwt_looks_like(const char *token)
{
    if (!token || strncmp(token, "eyJ", 3) != 0) return 0;
    const char *d1 = strchr(token, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d2 || d2 == d1 + 1 || strchr(d2 + 1, '.')) return 0;   /* an empty signature ("alg": "none") is a JWT, refused by the verifier */
    return 1;
}
