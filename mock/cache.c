/*
 * Reuse of generated responses. cache.h describes what an entry contains
 * and why reusing it is safe.
 *
 * The cache is a ring of CACHE_ENTRIES entries searched in order. It needs
 * no hash table because a benchmark repeats one or a few requests, and
 * for the varied requests of the tests a linear search costs little next
 * to generating the response.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "cache.h"

#define CACHE_ENTRIES 16
#define CACHE_KEY_MAX (64 * 1024)       /* bytes of all key parts together */
#define CACHE_BODY_MAX (256 * 1024)
#define CACHE_SLOTS 8
#define MARK_DIGITS 19

enum slot_value { SLOT_SEQ, SLOT_CREATED };

/* The offset of one marker value in an entry's body. */
struct slot {
	size_t at;
	enum slot_value value;
};

struct response_cache_entry {
	char *key;                      /* the key parts, one after another */
	size_t key_len[CACHE_PARTS];
	struct mock_options options;    /* as the request resolved them */
	int status;
	char *content_type;
	char *body;                     /* generated with the marker values */
	size_t body_len;
	struct slot slots[CACHE_SLOTS]; /* in body order */
	size_t n_slots;
};

struct response_cache {
	struct response_cache_entry entries[CACHE_ENTRIES];
	size_t count;
	size_t next;                    /* the entry to replace once full */
};

static int
key_matches(const struct response_cache_entry *e,
            const struct response_cache_key *key)
{
	size_t offset = 0;

	for (int p = 0; p < CACHE_PARTS; p++) {
		if (e->key_len[p] != key->len[p])
			return 0;
		if (key->len[p] > 0
		    && memcmp(e->key + offset, key->data[p], key->len[p]) != 0)
			return 0;
		offset += key->len[p];
	}
	return 1;
}

const struct response_cache_entry *
response_cache_find(const struct response_cache *cache,
                    const struct response_cache_key *key)
{
	if (cache == NULL)
		return NULL;
	for (size_t i = 0; i < cache->count; i++)
		if (key_matches(&cache->entries[i], key))
			return &cache->entries[i];
	return NULL;
}

/* Append e's body to out with seq and created in its slots. */
static int
append_filled(struct evbuffer *out, const struct response_cache_entry *e,
              uint64_t seq, long long created)
{
	char seq_text[32], created_text[32];
	int seq_len = snprintf(seq_text, sizeof(seq_text), "%llu", (unsigned long long)seq);
	int created_len = snprintf(created_text, sizeof(created_text), "%lld", created);
	size_t from = 0;

	for (size_t i = 0; i < e->n_slots; i++) {
		const struct slot *s = &e->slots[i];
		int is_seq = s->value == SLOT_SEQ;

		if (evbuffer_add(out, e->body + from, s->at - from) < 0
		    || evbuffer_add(out, is_seq ? seq_text : created_text,
		                    (size_t)(is_seq ? seq_len : created_len)) < 0)
			return -1;
		from = s->at + MARK_DIGITS;
	}
	return evbuffer_add(out, e->body + from, e->body_len - from);
}

int
response_cache_fill(const struct response_cache_entry *e, uint64_t seq,
                    long long created, struct mock_response *r,
                    struct mock_options *o)
{
	memcpy(o, &e->options, sizeof(*o));
	r->status = e->status;
	if (mock_response_set_type(r, e->content_type) < 0)
		return -1;
	return append_filled(r->body, e, seq, created);
}

/* Find the marker values in e->body. Returns -1 when there are more than
 * CACHE_SLOTS of them. */
static int
find_slots(struct response_cache_entry *e)
{
	char seq_mark[32], created_mark[32];
	size_t from = 0;

	snprintf(seq_mark, sizeof(seq_mark), "%llu", RESPONSE_CACHE_SEQ_MARK);
	snprintf(created_mark, sizeof(created_mark), "%lld", RESPONSE_CACHE_CREATED_MARK);
	e->n_slots = 0;
	for (;;) {
		const char *rest = e->body + from;
		size_t len = e->body_len - from;
		const char *seq = memmem(rest, len, seq_mark, MARK_DIGITS);
		const char *created = memmem(rest, len, created_mark, MARK_DIGITS);
		struct slot *s;

		if (seq == NULL && created == NULL)
			return 0;
		if (e->n_slots == CACHE_SLOTS)
			return -1;

		s = &e->slots[e->n_slots++];
		s->value = seq != NULL && (created == NULL || seq < created)
		           ? SLOT_SEQ : SLOT_CREATED;
		s->at = (size_t)((s->value == SLOT_SEQ ? seq : created) - e->body);
		from = s->at + MARK_DIGITS;
	}
}

/* Whether filling e for seq and created gives exactly body. */
static int
fills_to(const struct response_cache_entry *e, uint64_t seq,
         long long created, struct evbuffer *body)
{
	struct evbuffer *filled = evbuffer_new();
	size_t len = evbuffer_get_length(body);
	int same;

	if (filled == NULL)
		return 0;
	same = append_filled(filled, e, seq, created) == 0
	       && evbuffer_get_length(filled) == len
	       && memcmp(evbuffer_pullup(filled, -1), evbuffer_pullup(body, -1),
	                 len) == 0;
	evbuffer_free(filled);
	return same;
}

static void
entry_clear(struct response_cache_entry *e)
{
	free(e->key);
	free(e->content_type);
	free(e->body);
	memset(e, 0, sizeof(*e));
}

/* Copy the key parts into e. Returns -1 when out of memory or too long. */
static int
copy_key(struct response_cache_entry *e, const struct response_cache_key *key)
{
	size_t total = 0, offset = 0;

	for (int p = 0; p < CACHE_PARTS; p++)
		total += key->len[p];
	if (total > CACHE_KEY_MAX || (e->key = malloc(total + 1)) == NULL)
		return -1;
	for (int p = 0; p < CACHE_PARTS; p++) {
		if (key->len[p] > 0)
			memcpy(e->key + offset, key->data[p], key->len[p]);
		e->key_len[p] = key->len[p];
		offset += key->len[p];
	}
	return 0;
}

/* Build an entry from the marked response. Returns -1 when it cannot be kept. */
static int
build_entry(struct response_cache_entry *e,
            const struct response_cache_key *key,
            const struct mock_options *o,
            const struct mock_response *generated,
            const struct mock_response *marked)
{
	size_t len = evbuffer_get_length(marked->body);

	if (generated->stream || marked->stream || len > CACHE_BODY_MAX)
		return -1;
	if (copy_key(e, key) < 0)
		return -1;

	e->body = malloc(len + 1);
	e->content_type = strdup(generated->content_type);
	if (e->body == NULL || e->content_type == NULL)
		return -1;
	evbuffer_copyout(marked->body, e->body, len);
	e->body_len = len;
	e->status = generated->status;
	memcpy(&e->options, o, sizeof(*o));
	return find_slots(e);
}

void
response_cache_add(struct response_cache **cache,
                   const struct response_cache_key *key,
                   const struct mock_options *o,
                   const struct mock_response *generated,
                   const struct mock_response *marked,
                   uint64_t seq, long long created)
{
	struct response_cache_entry fresh = { 0 };
	struct response_cache *c;
	size_t slot;

	if (build_entry(&fresh, key, o, generated, marked) < 0
	    || !fills_to(&fresh, seq, created, generated->body)) {
		entry_clear(&fresh);
		return;
	}
	if (*cache == NULL && (*cache = calloc(1, sizeof(**cache))) == NULL) {
		entry_clear(&fresh);
		return;
	}

	c = *cache;
	if (c->count < CACHE_ENTRIES) {
		slot = c->count++;
	} else {
		slot = c->next;
		c->next = (c->next + 1) % CACHE_ENTRIES;
		entry_clear(&c->entries[slot]);
	}
	c->entries[slot] = fresh;
}

void
response_cache_free(struct response_cache *cache)
{
	if (cache == NULL)
		return;
	for (size_t i = 0; i < cache->count; i++)
		entry_clear(&cache->entries[i]);
	free(cache);
}
