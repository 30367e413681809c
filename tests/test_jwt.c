/* tests/test_jwt.c — the OIDC token verifier (gateway/jwt.c) against tokens
 * this test makes itself: it generates an RSA 2048 and an EC P-256 key at run
 * time, publishes them as a JWKS, signs tokens with them (and with keys the
 * JWKS does not hold), and checks that the good ones verify and each bad one
 * is refused for the right reason — including the classic attacks (alg none,
 * HS256 keyed with the RSA public key, a payload swapped under a signature). */
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "gateway/jwt.h"
#include "loom/loom.h"
#include "tests/testutil.h"

#define NOW 1700000000LL
#define ISS "https://idp.example.org/realms/loom"
#define AUD "loom-gateway"

static EVP_PKEY *rsa_key, *ec_key, *rsa_other, *ec_other;
static loom_jwks *jwks;

/* ---- making tokens ---------------------------------------------------- */

static char *b64url(const unsigned char *d, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n / 3 * 4 + 5);
    REQUIRE(out);
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        out[o++] = tab[d[i] >> 2];
        out[o++] = tab[(d[i] & 3) << 4];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)d[i] << 8 | d[i + 1];
        out[o++] = tab[v >> 10];
        out[o++] = tab[(v >> 4) & 63];
        out[o++] = tab[(v & 15) << 2];
    }
    out[o] = 0;
    return out;
}

static char *b64url_str(const char *s)
{
    return b64url((const unsigned char *)s, strlen(s));
}

static char *bn_b64(const BIGNUM *bn, int pad)
{
    int n = pad ? pad : BN_num_bytes(bn);
    unsigned char *buf = malloc((size_t)n);
    REQUIRE(buf && BN_bn2binpad(bn, buf, n) == n);
    char *s = b64url(buf, (size_t)n);
    free(buf);
    return s;
}

/* The DER signature of msg by key (SHA-256). */
static unsigned char *sign_der(EVP_PKEY *key, const char *msg, size_t *len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    REQUIRE(md && EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, key, NULL) == 1);
    REQUIRE(EVP_DigestSign(md, NULL, len, (const unsigned char *)msg, strlen(msg)) == 1);
    unsigned char *sig = malloc(*len);
    REQUIRE(sig && EVP_DigestSign(md, sig, len, (const unsigned char *)msg, strlen(msg)) == 1);
    EVP_MD_CTX_free(md);
    return sig;
}

/* An ECDSA DER signature as JWS's R||S. */
static unsigned char *der_to_raw(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)len);
    REQUIRE(s);
    unsigned char *raw = malloc(64);
    REQUIRE(raw && BN_bn2binpad(ECDSA_SIG_get0_r(s), raw, 32) == 32 &&
            BN_bn2binpad(ECDSA_SIG_get0_s(s), raw + 32, 32) == 32);
    ECDSA_SIG_free(s);
    return raw;
}

enum { SIG_NORMAL, SIG_ES_DER };

/* header.payload signed by key (RS256 or, for an EC key, ES256 as R||S;
 * SIG_ES_DER leaves an EC signature in DER). */
static char *sign_raw(const char *header, const char *payload, EVP_PKEY *key, int mode)
{
    char *h = b64url_str(header), *p = b64url_str(payload);
    size_t n = strlen(h) + strlen(p) + 2;
    char *msg = malloc(n);
    REQUIRE(msg);
    snprintf(msg, n, "%s.%s", h, p);
    size_t slen = 0;
    unsigned char *sig = sign_der(key, msg, &slen);
    if (EVP_PKEY_is_a(key, "EC") && mode == SIG_NORMAL) {
        unsigned char *raw = der_to_raw(sig, slen);
        free(sig);
        sig = raw;
        slen = 64;
    }
    char *s = b64url(sig, slen);
    size_t tn = n + strlen(s) + 1;
    char *tok = malloc(tn);
    REQUIRE(tok);
    snprintf(tok, tn, "%s.%s", msg, s);
    free(h);
    free(p);
    free(msg);
    free(sig);
    free(s);
    return tok;
}

/* The claims of a good token. */
static json_t *good_claims(void)
{
    return json_pack("{s:s, s:[s,s], s:s, s:[s,s], s:I, s:I, s:I, s:s}", "iss", ISS, "aud", "account", AUD,
                     "sub", "alice", "groups", "vo.example.org", "admins", "exp", (json_int_t)(NOW + 300),
                     "iat", (json_int_t)NOW, "nbf", (json_int_t)NOW, "preferred_username", "alice.a");
}

/* A token with these claims (consumed), signed by key, header alg/kid. */
static char *make_token(const char *alg, const char *kid, json_t *claims, EVP_PKEY *key)
{
    char header[256];
    if (kid) snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", alg, kid);
    else snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    char *payload = json_dumps(claims, JSON_COMPACT);
    REQUIRE(payload);
    char *tok = sign_raw(header, payload, key, SIG_NORMAL);
    free(payload);
    json_decref(claims);
    return tok;
}

/* good claims changed: set name to v (consumed), or delete it when v is NULL */
static json_t *claims_with(const char *name, json_t *v)
{
    json_t *c = good_claims();
    if (v) json_object_set_new(c, name, v);
    else json_object_del(c, name);
    return c;
}

/* ---- checking --------------------------------------------------------- */

static loom_jwt_policy policy(void)
{
    loom_jwt_policy p = {.issuer = ISS, .audience = AUD, .groups_claim = "groups", .now = NOW};
    return p;
}

static int verify(const char *tok, const loom_jwt_policy *p, loom_jwt_identity *id, char *err, size_t cap)
{
    return loom_jwt_verify(jwks, p, tok, strlen(tok), id, err, cap);
}

/* tok (freed) must be refused with LOOM_EAUTH and a message containing want. */
static void refused_p(char *tok, const loom_jwt_policy *p, const char *want, int line)
{
    loom_jwt_identity id;
    char err[256];
    int rc = verify(tok, p, &id, err, sizeof(err));
    loom_test_checks++;
    if (rc != LOOM_EAUTH || !strstr(err, want)) {
        fprintf(stderr, "%s:%d: want refusal \"%s\", got rc %d \"%s\"\n", __FILE__, line, want, rc, err);
        loom_test_failures++;
    }
    CHECK(id.user[0] == 0 && id.groups == NULL && id.ngroups == 0);
    loom_jwt_identity_free(&id);
    free(tok);
}
#define REFUSED(tok, want) do { loom_jwt_policy p_ = policy(); refused_p((tok), &p_, (want), __LINE__); } while (0)

/* tok (freed) must verify as user with ngroups groups. */
static void accepted_p(char *tok, const loom_jwt_policy *p, const char *user, int ngroups, int line)
{
    loom_jwt_identity id;
    char err[256];
    int rc = verify(tok, p, &id, err, sizeof(err));
    loom_test_checks++;
    if (rc != 0 || strcmp(id.user, user) != 0 || id.ngroups != ngroups) {
        fprintf(stderr, "%s:%d: want %s with %d groups, got rc %d \"%s\" user \"%s\" %d groups\n", __FILE__,
                line, user, ngroups, rc, err, id.user, id.ngroups);
        loom_test_failures++;
    }
    loom_jwt_identity_free(&id);
    free(tok);
}
#define ACCEPTED(tok, user, ng) do { loom_jwt_policy p_ = policy(); accepted_p((tok), &p_, (user), (ng), __LINE__); } while (0)

/* ---- the JWKS --------------------------------------------------------- */

static json_t *rsa_jwk(EVP_PKEY *key, const char *kid)
{
    BIGNUM *n = NULL, *e = NULL;
    REQUIRE(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n) == 1 &&
            EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e) == 1);
    char *ns = bn_b64(n, 0), *es = bn_b64(e, 0);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "RSA", "kid", kid, "use", "sig", "alg", "RS256",
                          "n", ns, "e", es);
    free(ns);
    free(es);
    BN_free(n);
    BN_free(e);
    return j;
}

static json_t *ec_jwk(EVP_PKEY *key, const char *kid)
{
    BIGNUM *x = NULL, *y = NULL;
    REQUIRE(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x) == 1 &&
            EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &y) == 1);
    char *xs = bn_b64(x, 32), *ys = bn_b64(y, 32);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "x", xs, "y", ys);
    if (kid) json_object_set_new(j, "kid", json_string(kid));
    free(xs);
    free(ys);
    BN_free(x);
    BN_free(y);
    return j;
}

/* {"keys": [k]} parsed: its rc, err filled. k consumed. */
static int parse_one(json_t *k, char *err, size_t cap)
{
    json_t *doc = json_pack("{s:[o]}", "keys", k);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    loom_jwks *set = NULL;
    int rc = loom_jwks_parse(text, strlen(text), &set, err, cap);
    CHECK(rc ? set == NULL : set != NULL);
    loom_jwks_free(&set);
    free(text);
    return rc;
}

static void jwks_bad(json_t *k, const char *want, int line)
{
    char err[256] = "";
    int rc = parse_one(k, err, sizeof(err));
    loom_test_checks++;
    if (rc != LOOM_EINVAL || !strstr(err, want)) {
        fprintf(stderr, "%s:%d: want JWKS error \"%s\", got rc %d \"%s\"\n", __FILE__, line, want, rc, err);
        loom_test_failures++;
    }
}
#define JWKS_BAD(k, want) jwks_bad((k), (want), __LINE__)

static void test_jwks(void)
{
    json_t *doc = json_pack("{s:[o, o, {s:s, s:s}, o, o]}", "keys", rsa_jwk(rsa_key, "r1"), ec_jwk(ec_key, "e1"),
                            "kty", "oct", "k", "c2VjcmV0", rsa_jwk(rsa_other, "r-enc"), ec_jwk(ec_other, "p384"));
    /* skipped: an encryption key, a P-384 key without alg */
    json_object_set_new(json_array_get(json_object_get(doc, "keys"), 3), "use", json_string("enc"));
    json_t *p384 = json_array_get(json_object_get(doc, "keys"), 4);
    json_object_set_new(p384, "crv", json_string("P-384"));
    char *text = json_dumps(doc, JSON_INDENT(1));
    json_decref(doc);
    char err[256] = "";
    CHECK_RC(loom_jwks_parse(text, strlen(text), &jwks, err, sizeof(err)), 0);
    REQUIRE(jwks);
    CHECK(loom_jwks_count(jwks) == 2);

    /* the same from a file */
    char path[] = "/tmp/test_jwt_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    loom_jwks *fromfile = NULL;
    CHECK_RC(loom_jwks_load_file(path, &fromfile, err, sizeof(err)), 0);
    CHECK(loom_jwks_count(fromfile) == 2);
    loom_jwks_free(&fromfile);
    CHECK(fromfile == NULL);
    unlink(path);
    CHECK_RC(loom_jwks_load_file(path, &fromfile, err, sizeof(err)), LOOM_EIO);
    CHECK(strstr(err, path) != NULL && fromfile == NULL);
    free(text);

    /* errors */
    loom_jwks *set = NULL;
    CHECK_RC(loom_jwks_parse("{\"keys\": [", 10, &set, err, sizeof(err)), LOOM_EINVAL);
    CHECK(strstr(err, "not JSON") && set == NULL);
    CHECK_RC(loom_jwks_parse("[]", 2, &set, err, sizeof(err)), LOOM_EINVAL);
    CHECK(strstr(err, "\"keys\""));
    CHECK_RC(loom_jwks_parse("{\"keys\": []}", 12, &set, err, sizeof(err)), LOOM_EINVAL);
    CHECK(strstr(err, "no usable"));
    json_t *k = rsa_jwk(rsa_key, "x");
    json_object_del(k, "n");
    JWKS_BAD(k, "no \"n\"");
    k = rsa_jwk(rsa_key, "x");
    json_object_del(k, "e");
    JWKS_BAD(k, "no \"e\"");
    k = rsa_jwk(rsa_key, "x");
    json_object_set_new(k, "n", json_string("AQAB="));
    JWKS_BAD(k, "not base64url");
    k = ec_jwk(ec_key, "x");
    json_object_del(k, "x");
    JWKS_BAD(k, "no \"x\"");
    k = ec_jwk(ec_key, "x");
    json_object_del(k, "y");
    JWKS_BAD(k, "no \"y\"");
    k = ec_jwk(ec_key, "x");
    json_object_del(k, "crv");
    JWKS_BAD(k, "no \"crv\"");
    k = ec_jwk(ec_key, "x");
    json_object_set_new(k, "crv", json_string("P-384"));
    json_object_set_new(k, "alg", json_string("ES256"));
    JWKS_BAD(k, "P-256");
    k = ec_jwk(ec_key, "x");
    json_object_set_new(k, "crv", json_string("P-384"));
    JWKS_BAD(k, "no usable");    /* skipped, and then nothing is left */
    k = ec_jwk(ec_key, "x");
    json_object_set_new(k, "x", json_string("AAAA"));
    JWKS_BAD(k, "32 bytes");
    k = ec_jwk(ec_key, "x");     /* a point off the curve: y of another key */
    json_t *other = ec_jwk(ec_other, NULL);
    json_object_set(k, "y", json_object_get(other, "y"));
    json_decref(other);
    JWKS_BAD(k, "not a point on P-256");
    k = rsa_jwk(rsa_key, "x");
    json_object_set_new(k, "alg", json_string("ES256"));
    JWKS_BAD(k, "does not fit");
    k = rsa_jwk(rsa_key, "x");   /* 1024 bits: the first half of n */
    json_object_set_new(k, "n", json_string(json_string_value(json_object_get(k, "n")) + 172));
    JWKS_BAD(k, "bits (2048 to 8192 are taken)");
    k = rsa_jwk(rsa_key, "x");
    json_object_set_new(k, "e", json_string("AQAA"));
    JWKS_BAD(k, "exponent");
    k = rsa_jwk(rsa_key, "x");
    json_object_set_new(k, "kid", json_integer(7));
    JWKS_BAD(k, "kid");
    JWKS_BAD(json_string("RSA"), "not an object");
    k = rsa_jwk(rsa_key, "x");
    json_object_del(k, "kty");
    JWKS_BAD(k, "no \"kty\"");
    CHECK_RC(loom_jwks_parse("{\"keys\":[], \"keys\":[]}", 22, &set, err, sizeof(err)), LOOM_EINVAL);
}

/* ---- tokens ----------------------------------------------------------- */

static void test_good(void)
{
    ACCEPTED(make_token("RS256", "r1", good_claims(), rsa_key), "alice", 2);
    ACCEPTED(make_token("ES256", "e1", good_claims(), ec_key), "alice", 2);
    /* without kid: the keys of the alg's type are tried */
    ACCEPTED(make_token("RS256", NULL, good_claims(), rsa_key), "alice", 2);
    ACCEPTED(make_token("ES256", NULL, good_claims(), ec_key), "alice", 2);
    /* aud as a string, one group as a string, a fractional exp */
    json_t *c = claims_with("aud", json_string(AUD));
    json_object_set_new(c, "groups", json_string("urn:mace:egi.eu:group:vo.example.org:role=member#aai"));
    json_object_set_new(c, "exp", json_real((double)NOW + 10.5));
    ACCEPTED(make_token("ES256", "e1", c, ec_key), "alice", 1);
    /* no groups claim; no nbf nor iat */
    c = claims_with("groups", NULL);
    json_object_del(c, "nbf");
    json_object_del(c, "iat");
    ACCEPTED(make_token("RS256", "r1", c, rsa_key), "alice", 0);

    /* the identity's contents; another user claim; no groups claim in the policy */
    loom_jwt_policy p = policy();
    loom_jwt_identity id;
    char err[256];
    char *tok = make_token("RS256", "r1", good_claims(), rsa_key);
    CHECK(loom_jwt_looks_like(tok));
    CHECK_RC(verify(tok, &p, &id, err, sizeof(err)), 0);
    CHECK(id.exp == NOW + 300 && id.ngroups == 2 && !strcmp(id.groups[0], "vo.example.org") &&
          !strcmp(id.groups[1], "admins"));
    loom_jwt_identity_free(&id);
    CHECK(id.groups == NULL && id.ngroups == 0);
    loom_jwt_identity_free(&id);          /* twice is fine */
    p.user_claim = "preferred_username";
    p.groups_claim = NULL;
    CHECK_RC(verify(tok, &p, &id, err, sizeof(err)), 0);
    CHECK(!strcmp(id.user, "alice.a") && id.ngroups == 0 && id.groups == NULL);
    loom_jwt_identity_free(&id);
    free(tok);

    /* leeway: 30 s after exp passes with the default 60, not with none */
    p = policy();
    p.now = NOW + 330;
    accepted_p(make_token("RS256", "r1", good_claims(), rsa_key), &p, "alice", 2, __LINE__);
    p.leeway_s = -1;
    refused_p(make_token("RS256", "r1", good_claims(), rsa_key), &p, "token expired", __LINE__);
    p.leeway_s = 10;
    refused_p(make_token("RS256", "r1", good_claims(), rsa_key), &p, "token expired", __LINE__);
}

static void test_claims(void)
{
    REFUSED(make_token("RS256", "r1", claims_with("exp", json_integer(NOW - 61)), rsa_key), "token expired");
    REFUSED(make_token("RS256", "r1", claims_with("exp", NULL), rsa_key), "no expiry");
    REFUSED(make_token("RS256", "r1", claims_with("exp", json_string("1800000000")), rsa_key), "\"exp\" is not");
    REFUSED(make_token("RS256", "r1", claims_with("exp", json_integer(-5)), rsa_key), "\"exp\" is not");
    REFUSED(make_token("RS256", "r1", claims_with("nbf", json_integer(NOW + 120)), rsa_key), "not yet valid");
    REFUSED(make_token("RS256", "r1", claims_with("nbf", json_true()), rsa_key), "\"nbf\" is not");
    REFUSED(make_token("RS256", "r1", claims_with("iat", json_integer(NOW + 120)), rsa_key), "in the future");
    REFUSED(make_token("RS256", "r1", claims_with("aud", json_string("other")), rsa_key), "wrong audience");
    REFUSED(make_token("RS256", "r1", claims_with("aud", json_pack("[s,s]", "a", "b")), rsa_key), "wrong audience");
    REFUSED(make_token("RS256", "r1", claims_with("aud", NULL), rsa_key), "no audience");
    REFUSED(make_token("RS256", "r1", claims_with("aud", json_pack("[s,i]", AUD, 1)), rsa_key), "aud holds");
    REFUSED(make_token("RS256", "r1", claims_with("iss", json_string("https://evil.example.org")), rsa_key),
            "wrong issuer");
    REFUSED(make_token("RS256", "r1", claims_with("iss", json_string(ISS "/")), rsa_key), "wrong issuer");
    REFUSED(make_token("RS256", "r1", claims_with("iss", NULL), rsa_key), "no issuer");
    /* the user */
    REFUSED(make_token("RS256", "r1", claims_with("sub", NULL), rsa_key), "no user claim \"sub\"");
    REFUSED(make_token("RS256", "r1", claims_with("sub", json_string("")), rsa_key), "is empty");
    REFUSED(make_token("RS256", "r1", claims_with("sub", json_integer(42)), rsa_key), "not a string");
    char longname[65];
    memset(longname, 'a', 64);
    longname[64] = 0;
    REFUSED(make_token("RS256", "r1", claims_with("sub", json_string(longname)), rsa_key), "over 63 bytes");
    longname[63] = 0;            /* 63 bytes are fine */
    ACCEPTED(make_token("RS256", "r1", claims_with("sub", json_string(longname)), rsa_key), longname, 2);
    REFUSED(make_token("RS256", "r1", claims_with("sub", json_string("alice\nadmin")), rsa_key), "characters");
    REFUSED(make_token("RS256", "r1", claims_with("sub", json_string("alice\x7f")), rsa_key), "characters");
    REFUSED(make_token("RS256", "r1", claims_with("sub", json_string("alice bob")), rsa_key), "characters");
    REFUSED(make_token("RS256", "r1", claims_with("sub", json_string("../admin")), rsa_key), "characters");
    /* (jansson refuses \u0000 in the payload already) */
    REFUSED(make_token("RS256", "r1", claims_with("sub", json_stringn("alice\0admin", 11)), rsa_key),
            "malformed token");
    ACCEPTED(make_token("RS256", "r1", claims_with("sub", json_string("a.b_c@d+e-F9")), rsa_key), "a.b_c@d+e-F9", 2);
    /* the groups */
    REFUSED(make_token("RS256", "r1", claims_with("groups", json_pack("[s,i]", "a", 1)), rsa_key), "groups claim");
    REFUSED(make_token("RS256", "r1", claims_with("groups", json_pack("[s,n]", "a")), rsa_key), "groups claim");
    REFUSED(make_token("RS256", "r1", claims_with("groups", json_pack("{s:s}", "a", "b")), rsa_key),
            "not a string or an array");
    REFUSED(make_token("RS256", "r1", claims_with("groups", json_pack("[s]", "")), rsa_key), "groups claim");
    REFUSED(make_token("RS256", "r1", claims_with("groups", json_pack("[s]", "a\tb")), rsa_key), "groups claim");
    char big[258];
    memset(big, 'g', 257);
    big[257] = 0;
    REFUSED(make_token("RS256", "r1", claims_with("groups", json_pack("[s]", big)), rsa_key), "groups claim");
    big[256] = 0;
    ACCEPTED(make_token("RS256", "r1", claims_with("groups", json_pack("[s]", big)), rsa_key), "alice", 1);
    json_t *many = json_array();
    for (int i = 0; i < 257; i++) json_array_append_new(many, json_string("g"));
    REFUSED(make_token("RS256", "r1", claims_with("groups", many), rsa_key), "over 256 groups");
    /* duplicate claims are refused, not resolved either way */
    char *tok = sign_raw("{\"alg\":\"RS256\",\"kid\":\"r1\"}",
                         "{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"alice\",\"sub\":\"root\",\"exp\":1700000300}",
                         rsa_key, SIG_NORMAL);
    REFUSED(tok, "payload is not a JSON object");
}

static char *hs256_with_rsa_public_key(void)
{
    BIO *bio = BIO_new(BIO_s_mem());
    REQUIRE(bio && PEM_write_bio_PUBKEY(bio, rsa_key) == 1);
    char *pem = NULL;
    long pemlen = BIO_get_mem_data(bio, &pem);
    char *h = b64url_str("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"r1\"}");
    json_t *c = good_claims();
    char *claims = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    char *p = b64url_str(claims);
    free(claims);
    char msg[4096];
    snprintf(msg, sizeof(msg), "%s.%s", h, p);
    unsigned char mac[32];
    size_t maclen = 0;
    REQUIRE(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, pem, (size_t)pemlen, (unsigned char *)msg, strlen(msg),
                      mac, sizeof(mac), &maclen));
    char *s = b64url(mac, maclen);
    char *tok = malloc(strlen(msg) + strlen(s) + 2);
    REQUIRE(tok);
    sprintf(tok, "%s.%s", msg, s);
    free(s);
    free(h);
    free(p);
    BIO_free(bio);
    return tok;
}

/* tok with its part'th part (0..2) replaced by b64url(text) (or by text
 * itself when raw); tok is freed. */
static char *replace_part(char *tok, int part, const char *text, int raw)
{
    char *parts[3], *save = NULL;
    parts[0] = strtok_r(tok, ".", &save);
    parts[1] = strtok_r(NULL, ".", &save);
    parts[2] = strtok_r(NULL, ".", &save);
    REQUIRE(parts[2]);
    char *enc = raw ? strdup(text) : b64url_str(text);
    parts[part] = enc;
    size_t n = strlen(parts[0]) + strlen(parts[1]) + strlen(parts[2]) + 3;
    char *out = malloc(n);
    REQUIRE(out);
    snprintf(out, n, "%s.%s.%s", parts[0], parts[1], parts[2]);
    free(enc);
    free(tok);
    return out;
}

/* the part'th part of tok (a copy) */
static char *part_of(const char *tok, int part)
{
    const char *s = tok;
    for (int i = 0; i < part; i++) s = strchr(s, '.') + 1;
    size_t n = strcspn(s, ".");
    return strndup(s, n);
}

static void test_signatures(void)
{
    /* alg none, with a signature and without */
    char *tok = make_token("RS256", "r1", good_claims(), rsa_key);
    REFUSED(replace_part(tok, 0, "{\"alg\":\"none\",\"typ\":\"JWT\"}", 0), "alg none");
    tok = make_token("RS256", "r1", good_claims(), rsa_key);
    tok = replace_part(tok, 0, "{\"alg\":\"none\"}", 0);
    *(strrchr(tok, '.') + 1) = 0;
    REFUSED(tok, "malformed token");
    /* HS256 keyed with the RSA public key (PEM), the confusion attack */
    REFUSED(hs256_with_rsa_public_key(), "unsupported alg");
    tok = make_token("RS256", "r1", good_claims(), rsa_key);
    REFUSED(replace_part(tok, 0, "{\"alg\":\"RS512\",\"kid\":\"r1\"}", 0), "unsupported alg");
    tok = make_token("RS256", "r1", good_claims(), rsa_key);
    REFUSED(replace_part(tok, 0, "{\"kid\":\"r1\"}", 0), "no alg");
    tok = make_token("RS256", "r1", good_claims(), rsa_key);
    REFUSED(replace_part(tok, 0, "{\"alg\":\"RS256\",\"kid\":\"r1\",\"crit\":[\"exp\"]}", 0), "critical");
    tok = make_token("RS256", "r1", good_claims(), rsa_key);
    REFUSED(replace_part(tok, 0, "{\"alg\":\"RS256\",\"kid\":5}", 0), "kid is not a string");
    /* keys */
    REFUSED(make_token("RS256", "nope", good_claims(), rsa_key), "unknown key id");
    REFUSED(make_token("RS256", "e1", good_claims(), rsa_key), "not an RS256 key");
    REFUSED(make_token("ES256", "r1", good_claims(), ec_key), "not an ES256 key");
    REFUSED(make_token("RS256", "r1", good_claims(), rsa_other), "bad signature");
    REFUSED(make_token("RS256", NULL, good_claims(), rsa_other), "bad signature");
    REFUSED(make_token("ES256", "e1", good_claims(), ec_other), "bad signature");
    /* a payload swapped under a good signature, and one changed by a byte */
    char *good = make_token("RS256", "r1", good_claims(), rsa_key);
    char *mallory = make_token("RS256", "r1", claims_with("sub", json_string("root")), rsa_other);
    char *p = part_of(mallory, 1);
    REFUSED(replace_part(strdup(good), 1, p, 1), "bad signature");
    free(p);
    free(mallory);
    p = part_of(good, 1);
    p[5] = p[5] == 'A' ? 'B' : 'A';
    REFUSED(replace_part(strdup(good), 1, p, 1), "bad signature");
    free(p);
    /* an RSA signature of the wrong length, and one of zeros */
    unsigned char zsig[256] = {0};
    p = b64url(zsig, 255);
    REFUSED(replace_part(strdup(good), 2, p, 1), "bad signature");
    free(p);
    p = b64url(zsig, 256);
    REFUSED(replace_part(strdup(good), 2, p, 1), "bad signature");
    free(p);
    free(good);
    /* ES256 signatures: DER instead of R||S, 63 bytes, r = s = 0 */
    json_t *c = good_claims();
    char *claims = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    REFUSED(sign_raw("{\"alg\":\"ES256\",\"kid\":\"e1\"}", claims, ec_key, SIG_ES_DER), "64 bytes");
    unsigned char zeros[64] = {0};
    char *z = b64url(zeros, 63);
    REFUSED(replace_part(make_token("ES256", "e1", good_claims(), ec_key), 2, z, 1), "64 bytes");
    free(z);
    z = b64url(zeros, 64);
    REFUSED(replace_part(make_token("ES256", "e1", good_claims(), ec_key), 2, z, 1), "bad signature");
    free(z);
    free(claims);
}

/* tok with the last character of part flipped to one with stray low bits */
static char *stray_bits(char *tok, int part)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *s = tok;
    for (int i = 0; i < part; i++) s = strchr(s, '.') + 1;
    size_t n = strcspn(s, ".");
    REQUIRE(n % 4 != 0);
    int v = (int)(strchr(tab, s[n - 1]) - tab);
    s[n - 1] = tab[v | 1];
    return tok;
}

static void test_format(void)
{
    char *tok = make_token("RS256", "r1", good_claims(), rsa_key);
    tok[3] = '+';
    REFUSED(tok, "header is not base64url");
    tok = make_token("RS256", "r1", good_claims(), rsa_key);
    tok[strlen(tok) - 1] = '/';
    REFUSED(tok, "signature is not base64url");
    REFUSED(stray_bits(make_token("RS256", "r1", good_claims(), rsa_key), 0), "header is not base64url");
    REFUSED(stray_bits(make_token("RS256", "r1", good_claims(), rsa_key), 2), "signature is not base64url");
    /* padding */
    char *good = make_token("RS256", "r1", good_claims(), rsa_key);
    char *h = part_of(good, 0);
    size_t hn = strlen(h);
    h = realloc(h, hn + 4);
    while (hn % 4) h[hn++] = '=';
    h[hn] = 0;
    REFUSED(replace_part(strdup(good), 0, h, 1), "header is not base64url");
    free(h);
    /* a payload that is not JSON (checked only after the signature, so signed) */
    REFUSED(sign_raw("{\"alg\":\"RS256\",\"kid\":\"r1\"}", "not json", rsa_key, SIG_NORMAL),
            "payload is not a JSON object");
    REFUSED(sign_raw("{\"alg\":\"RS256\",\"kid\":\"r1\"}", "[1]", rsa_key, SIG_NORMAL),
            "payload is not a JSON object");
    REFUSED(replace_part(strdup(good), 0, "{\"alg\":", 0), "header is not a JSON object");
    REFUSED(replace_part(strdup(good), 0, "\"RS256\"", 0), "header is not a JSON object");
    /* the number of parts */
    REFUSED(strdup("eyJhbGciOiJSUzI1NiJ9.eyJ9"), "malformed token");
    REFUSED(strdup("a.b.c.d"), "malformed token");
    REFUSED(strdup(".."), "malformed token");
    REFUSED(strdup(""), "malformed token");
    size_t gl = strlen(good);
    char *four = malloc(gl + 3);
    snprintf(four, gl + 3, "%s.x", good);
    REFUSED(four, "malformed token");
    /* a NUL inside the given length */
    loom_jwt_policy pol = policy();
    loom_jwt_identity id;
    char err[256];
    char *withnul = malloc(gl + 2);
    memcpy(withnul, good, gl + 1);
    withnul[gl + 1] = 0;
    CHECK_RC(loom_jwt_verify(jwks, &pol, withnul, gl + 1, &id, err, sizeof(err)), LOOM_EAUTH);
    CHECK(strstr(err, "malformed"));
    free(withnul);
    /* huge: refused before decoding */
    size_t hugelen = LOOM_JWT_MAX_TOKEN + 1;
    char *huge = malloc(hugelen + 1);
    memset(huge, 'A', hugelen);
    huge[10] = huge[20] = '.';
    huge[hugelen] = 0;
    REFUSED(huge, "over 16384 bytes");
    /* exactly at the bound it is decoded (and refused for what it is) */
    huge = malloc(LOOM_JWT_MAX_TOKEN + 1);
    memset(huge, 'A', LOOM_JWT_MAX_TOKEN);
    huge[10] = huge[20] = '.';
    huge[LOOM_JWT_MAX_TOKEN] = 0;
    REFUSED(huge, "header is not");
    free(good);
}

static void test_looks_like(void)
{
    char *tok = make_token("ES256", "e1", good_claims(), ec_key);
    CHECK(loom_jwt_looks_like(tok) == 1);
    free(tok);
    CHECK(loom_jwt_looks_like("eyJa.b.c") == 1);
    CHECK(loom_jwt_looks_like("loom_0123456789abcdef") == 0);
    CHECK(loom_jwt_looks_like("eyJa.b") == 0);
    CHECK(loom_jwt_looks_like("eyJa..c") == 0);
    CHECK(loom_jwt_looks_like("eyJa.b.") == 1);   /* an empty signature: "alg": "none", for the verifier to refuse */
    CHECK(loom_jwt_looks_like("eyJa.b.c.d") == 0);
    CHECK(loom_jwt_looks_like("abc.b.c") == 0);
    CHECK(loom_jwt_looks_like("") == 0);
    CHECK(loom_jwt_looks_like(NULL) == 0);
}

static void test_args(void)
{
    loom_jwt_policy p = policy();
    loom_jwt_identity id;
    char err[256];
    char *tok = make_token("RS256", "r1", good_claims(), rsa_key);
    size_t n = strlen(tok);
    CHECK_RC(loom_jwt_verify(NULL, &p, tok, n, &id, err, sizeof(err)), LOOM_EINVAL);
    CHECK_RC(loom_jwt_verify(jwks, NULL, tok, n, &id, err, sizeof(err)), LOOM_EINVAL);
    CHECK_RC(loom_jwt_verify(jwks, &p, NULL, 0, &id, err, sizeof(err)), LOOM_EINVAL);
    CHECK_RC(loom_jwt_verify(jwks, &p, tok, n, NULL, err, sizeof(err)), LOOM_EINVAL);
    p.issuer = NULL;
    CHECK_RC(loom_jwt_verify(jwks, &p, tok, n, &id, err, sizeof(err)), LOOM_EINVAL);
    CHECK(strstr(err, "issuer"));
    p = policy();
    p.audience = "";
    CHECK_RC(loom_jwt_verify(jwks, &p, tok, n, &id, err, sizeof(err)), LOOM_EINVAL);
    p = policy();
    p.leeway_s = 100000;
    CHECK_RC(loom_jwt_verify(jwks, &p, tok, n, &id, err, sizeof(err)), LOOM_EINVAL);
    p = policy();
    p.now = -1;
    CHECK_RC(loom_jwt_verify(jwks, &p, tok, n, &id, err, sizeof(err)), LOOM_EINVAL);
    /* a NULL or tiny err buffer */
    p = policy();
    p.audience = "other";
    CHECK_RC(loom_jwt_verify(jwks, &p, tok, n, &id, NULL, 0), LOOM_EAUTH);
    CHECK_RC(loom_jwt_verify(jwks, &p, tok, n, &id, err, 4), LOOM_EAUTH);
    CHECK(strlen(err) == 3);
    /* the real clock: this token expired in 2023 */
    p = policy();
    p.now = 0;
    CHECK_RC(loom_jwt_verify(jwks, &p, tok, n, &id, err, sizeof(err)), LOOM_EAUTH);
    CHECK(strstr(err, "expired"));
    free(tok);
    loom_jwks *set = NULL;
    CHECK_RC(loom_jwks_parse(NULL, 0, &set, err, sizeof(err)), LOOM_EINVAL);
    CHECK_RC(loom_jwks_parse("{}", 2, NULL, err, sizeof(err)), LOOM_EINVAL);
    loom_jwks_free(NULL);
    loom_jwks_free(&set);
    CHECK(loom_jwks_count(NULL) == 0);
    loom_jwt_identity_free(NULL);
}

/* ---- threads: one loom_jwks, verified against from several at once ---- */

#define THREADS 4
#define ROUNDS 40

static char *thread_tokens[2];

static void *verifier(void *arg)
{
    long ok = 0;
    loom_jwt_policy p = policy();
    for (int i = 0; i < ROUNDS; i++) {
        loom_jwt_identity id;
        char err[128];
        const char *t = thread_tokens[i % 2];
        if (loom_jwt_verify(jwks, &p, t, strlen(t), &id, err, sizeof(err)) == 0 && id.ngroups == 2) ok++;
        loom_jwt_identity_free(&id);
    }
    return (void *)ok;
}

static void test_threads(void)
{
    thread_tokens[0] = make_token("RS256", NULL, good_claims(), rsa_key);
    thread_tokens[1] = make_token("ES256", "e1", good_claims(), ec_key);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) REQUIRE(pthread_create(&th[i], NULL, verifier, NULL) == 0);
    long total = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r = NULL;
        pthread_join(th[i], &r);
        total += (long)r;
    }
    CHECK(total == THREADS * ROUNDS);
    free(thread_tokens[0]);
    free(thread_tokens[1]);
}

int main(void)
{
    rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    rsa_other = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    ec_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ec_other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    REQUIRE(rsa_key && rsa_other && ec_key && ec_other);
    test_jwks();
    test_good();
    test_claims();
    test_signatures();
    test_format();
    test_looks_like();
    test_args();
    test_threads();
    loom_jwks_free(&jwks);
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(rsa_other);
    EVP_PKEY_free(ec_key);
    EVP_PKEY_free(ec_other);
    return TEST_DONE();
}
