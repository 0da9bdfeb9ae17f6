/* pgcrypt: the record encryption of store-postgresql.so (DESIGN.md "Token
 * stores and fleets"): AES-256-GCM with a random 12-byte nonce, the record's
 * identity as associated data, so a record moved to another identity (or
 * namespace) fails to decrypt; and the key's parsing (32 bytes, base64 or
 * hex, the first line). No libpq here: tests/unit/test-store-pg.c links it. */
#ifndef MC_STORE_PG_CRYPT_H
#define MC_STORE_PG_CRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PGC_KEY_LEN    32
#define PGC_NONCE_LEN  12
#define PGC_TAG_LEN    16
#define PGC_VERSION    1      /* the first byte of a sealed record */
#define PGC_OVERHEAD   (1 + PGC_NONCE_LEN + PGC_TAG_LEN)
#define PGC_KEYID_MAX  64

/** Parse a key: 64 hex digits, or base64 (standard or URL-safe, padding
 *  optional) of 32 bytes; surrounding blanks ignored. @return 0, or -1
 *  with *why ("must be 32 bytes ..."). */
int pgc_parse_key(const char *text, uint8_t key[PGC_KEY_LEN], const char **why);

/** The key's default id: "k" + the first 12 hex digits of SHA-256("mailconn
 *  token key" || key): names a key, never reveals it. */
void pgc_key_id(const uint8_t key[PGC_KEY_LEN], char out[PGC_KEYID_MAX + 1]);

/** Whether s is a valid key id ([A-Za-z0-9._-]{1,64}). */
bool pgc_key_id_ok(const char *s);

/** Associated data for a token record: a tag and each field length-prefixed
 *  (no two identities give the same bytes). Malloc'd; NULL on failure. */
uint8_t *pgc_aad_token(const char *namespace_, const char *server, const char *provider,
                       const char *client_id, const char *user, const char *token_url,
                       size_t *len);
/** Associated data for a pending authorization. */
uint8_t *pgc_aad_pending(const char *namespace_, const char *state, size_t *len);

/** Seal: *out = version || nonce || ciphertext || tag (malloc'd, len + PGC_OVERHEAD).
 *  @return 0, -1 (OpenSSL failure or no memory). */
int pgc_seal(const uint8_t key[PGC_KEY_LEN], const uint8_t *aad, size_t aad_len,
             const uint8_t *plain, size_t len, uint8_t **out, size_t *out_len);
/** Open: *out malloc'd (NUL-terminated for convenience, the terminator not
 *  counted). @return 0, -1 (not a sealed record of this version), -2 (the tag
 *  does not verify: wrong key, altered, or another identity's), -3 (no memory). */
int pgc_open(const uint8_t key[PGC_KEY_LEN], const uint8_t *aad, size_t aad_len,
             const uint8_t *sealed, size_t len, char **out, size_t *out_len);

#endif
