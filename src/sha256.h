/*
 * SHA-256 through OpenSSL, with the algorithm fetched once per process.
 */
#ifndef TOLLGATE_SHA256_H
#define TOLLGATE_SHA256_H

#include <stddef.h>

#include <openssl/evp.h>

#define TG_SHA256_LEN 32

/* The SHA-256 implementation, fetched from OpenSSL's provider on first
 * use: EVP_sha256() makes every digest fetch it again, about 5,000
 * instructions each (callgrind). NULL when the fetch failed, and every
 * digest then fails. Thread-safe. */
const EVP_MD *tg_sha256_md(void);

/* Write the SHA-256 of the len bytes at data into out. Returns 0, or -1
 * when OpenSSL failed (out of memory). Each call makes a fresh digest
 * context. A context kept per thread and reset with EVP_DigestInit_ex2()
 * would save about 450 of the 3,440 instructions of a 44-byte key's
 * digest (callgrind, OpenSSL 3.0.19, x86-64), too few to be worth passing
 * a context to every caller. */
int tg_sha256(const void *data, size_t len, unsigned char out[TG_SHA256_LEN]);

#endif
