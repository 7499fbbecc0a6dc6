/*
 * SHA-256 through OpenSSL, with the algorithm fetched once per process.
 */
#include <pthread.h>

#include "sha256.h"

static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md;

static void
fetch_sha256(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

const EVP_MD *
tg_sha256_md(void)
{
	pthread_once(&sha256_once, fetch_sha256);
	return sha256_md;
}

int
tg_sha256(const void *data, size_t len, unsigned char out[TG_SHA256_LEN])
{
	unsigned int out_len = 0;
	const EVP_MD *md = tg_sha256_md();

	if (md == NULL || EVP_Digest(data, len, out, &out_len, md, NULL) != 1)
		return -1;
	return out_len == TG_SHA256_LEN ? 0 : -1;
}
