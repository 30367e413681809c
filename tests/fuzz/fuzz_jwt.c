/* tests/fuzz/fuzz_jwt.c — fuzz the OIDC token verifier (gateway/jwt.c) with
 * a fixed JWKS of one RSA and one EC P-256 key.  The first byte picks what the
 * rest is (its low two bits):
 *   0  a token, verified as it is (the parsing, base64url, header, key choice
 *      and signature paths: a mutated token almost never gets past the
 *      signature, so the claims are reached through mode 1);
 *   1  "HEADER\nPAYLOAD" (JSON text; without a newline all of it is the
 *      payload under {"alg":"ES256","kid":"e1"}), which the target encodes
 *      and signs itself with the EC key, so that every claim check sees the
 *      fuzzer's bytes behind a good signature;
 *   2  a JWKS document, parsed and freed;
 *   3  a token as in 0 under another policy (preferred_username, no groups,
 *      no leeway).
 * Invariants: only the documented codes come back, a refusal says why and
 * leaves the identity empty, an accepted identity keeps the documented
 * bounds.  The EC private key below is a throwaway made for this file. */
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/jwt.h"
#include "loom/loom.h"

static const char jwks_json[] =
    "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r1\",\"use\":\"sig\",\"alg\":\"RS256\",\"n\":\"yx7BEQzCwB48uF6G010vXa-ri4"
    "Qvc2h6FOeBGy5vek_tTlwA0ewimUHUv2FQrZrU19zEwoB1cIdz9ge8HkM7VStNspzIVdDYa6xVjW3u1RUHTj4i-d9U"
    "Y-vS_Lk0pZdmH7XllE1HlItz4VKEKQER5ZZmzB9yCO0sYV1vgsOfMc3QEFCk0NIsPGyuN4_kcILzk09OibzhYG2C4f"
    "bo8Uxlzr1O-Kbqvx-RfMVuCquMi4I5CvCJg-9ebYewWnEg1QlYi-2p6hg8mSSZraKCQal_DuATPBJWAQ1MN0YVkNK9"
    "C3t7cV-Q9KiW7YWAkNWTWrE4hhSnYVReN9nmt2Vo7RhQzw\",\"e\":\"AQAB\"},{\"kty\":\"EC\",\"kid\":\"e1\",\"crv\":\""
    "P-256\",\"x\":\"PuVKux1M_SsGvdmVaQ3vKAZ4sfbnbySpYKfaxo7FlWQ\",\"y\":\"2Cmtd-mzxu0wH-BInBWMrQrFUJFk"
    "7xOjbkl4f9A2PFk\"}]}";

static const char ec_private_pem[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFGJeOCmfjFj5xeB2\n"
    "+2nii/oMLHsMnLmK5GVKlimvv72hRANCAAQ+5Uq7HUz9Kwa92ZVpDe8oBnix9udv\n"
    "JKlgp9rGjsWVZNgprXfps8btMB/gSJwVjK0KxVCRZO8To25JeH/QNjxZ\n"
    "-----END PRIVATE KEY-----\n";

static loom_jwks *jwks;
static EVP_PKEY *signer;

static void setup(void)
{
    if (jwks) return;
    char err[256];
    if (loom_jwks_parse(jwks_json, strlen(jwks_json), &jwks, err, sizeof(err)) != 0 ||
        loom_jwks_count(jwks) != 2) {
        fprintf(stderr, "fuzz_jwt: the fixed JWKS: %s\n", err);
        abort();
    }
    BIO *bio = BIO_new_mem_buf(ec_private_pem, -1);
    signer = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!signer) abort();
}

static int user_char_ok(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           strchr("._@+-", c) != NULL;
}

static void check_result(int rc, const loom_jwt_identity *id, const char *err)
{
    if (rc == 0) {
        size_t n = strlen(id->user);
        if (n == 0 || n >= LOOM_JWT_USER_MAX) abort();
        for (size_t i = 0; i < n; i++)
            if (!user_char_ok((unsigned char)id->user[i])) abort();
        if (id->ngroups < 0 || id->ngroups > LOOM_JWT_GROUPS_MAX) abort();
        if ((id->ngroups == 0) != (id->groups == NULL)) abort();
        for (int i = 0; i < id->ngroups; i++) {
            size_t g = strlen(id->groups[i]);
            if (g == 0 || g > LOOM_JWT_GROUP_MAX) abort();
        }
    } else if (rc == LOOM_EAUTH) {
        if (!err[0] || id->user[0] || id->groups || id->ngroups) abort();
    } else if (rc != LOOM_ENOMEM) {
        abort();
    }
}

static void verify(const char *tok, size_t len, int alt)
{
    loom_jwt_policy p = {.issuer = "https://idp.example", .audience = "loom", .groups_claim = "groups",
                         .now = 1700000000};
    if (alt) {
        p.user_claim = "preferred_username";
        p.groups_claim = NULL;
        p.leeway_s = -1;
    }
    loom_jwt_identity id;
    char err[256];
    int rc = loom_jwt_verify(jwks, &p, tok, len, &id, err, sizeof(err));
    check_result(rc, &id, err);
    loom_jwt_identity_free(&id);
    /* the shape test on the same bytes, NUL-terminated */
    char *z = malloc(len + 1);
    if (!z) return;
    memcpy(z, tok, len);
    z[len] = 0;
    if (loom_jwt_looks_like(z) && (!memchr(z, '.', len) || strncmp(z, "eyJ", 3) != 0)) abort();
    free(z);
}

static char *b64url(const unsigned char *d, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n / 3 * 4 + 5);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16;
        if (i + 1 < n) v |= (uint32_t)d[i + 1] << 8;
        if (i + 2 < n) v |= d[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        if (i + 1 < n) out[o++] = tab[(v >> 6) & 63];
        if (i + 2 < n) out[o++] = tab[v & 63];
    }
    out[o] = 0;
    return out;
}

/* header.payload, signed ES256 by the fixed EC key, verified. */
static void sign_and_verify(const char *in, size_t n)
{
    static const char default_header[] = "{\"alg\":\"ES256\",\"kid\":\"e1\"}";
    const char *nl = memchr(in, '\n', n);
    const char *hdr = nl ? in : default_header, *pay = nl ? nl + 1 : in;
    size_t hl = nl ? (size_t)(nl - in) : strlen(default_header), pl = nl ? n - hl - 1 : n;
    char *h = b64url((const unsigned char *)hdr, hl), *p = b64url((const unsigned char *)pay, pl);
    size_t mlen = (h ? strlen(h) : 0) + (p ? strlen(p) : 0) + 1;
    char *tok = h && p ? malloc(mlen + 1 + 87) : NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[80];
    size_t dlen = sizeof(der);
    ECDSA_SIG *sig = NULL;
    if (!tok || !md) goto done;
    snprintf(tok, mlen + 1, "%s.%s", h, p);
    if (EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, signer, NULL) != 1 ||
        EVP_DigestSign(md, der, &dlen, (const unsigned char *)tok, mlen) != 1)
        abort();
    const unsigned char *dp = der;
    if (!(sig = d2i_ECDSA_SIG(NULL, &dp, (long)dlen))) abort();
    unsigned char raw[64];
    if (BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32) != 32 || BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32) != 32)
        abort();
    char *s = b64url(raw, sizeof(raw));
    if (!s) goto done;
    tok[mlen] = '.';
    memcpy(tok + mlen + 1, s, 86);
    tok[mlen + 87] = 0;
    free(s);
    verify(tok, mlen + 87, 0);
done:
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    free(tok);
    free(h);
    free(p);
}

static void parse_jwks(const char *in, size_t n)
{
    loom_jwks *k = NULL;
    char err[256];
    int rc = loom_jwks_parse(in, n, &k, err, sizeof(err));
    if (rc == 0 ? (k == NULL || loom_jwks_count(k) < 1) : (k != NULL || (rc == LOOM_EINVAL && !err[0])))
        abort();
    loom_jwks_free(&k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    setup();
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] & 3) {
    case 0: verify(in, n, 0); break;
    case 1: sign_and_verify(in, n); break;
    case 2: parse_jwks(in, n); break;
    default: verify(in, n, 1); break;
    }
    return 0;
}
