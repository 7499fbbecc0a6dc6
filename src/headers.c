/*
 * Header lists and proxy header rewriting.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "headers.h"

/* A header name with its length, so that a match costs no strlen(). */
struct header_name {
	const char *name;
	size_t len;
};

#define HEADER_NAME(literal) {literal, sizeof(literal) - 1}

/* The hop-by-hop names, once for the table and once for the lengths. */
#define HOP_BY_HOP_NAMES(X) \
	X("Connection") X("Keep-Alive") X("Proxy-Connection") X("Proxy-Authenticate") \
	X("Proxy-Authorization") X("TE") X("Trailer") X("Transfer-Encoding") X("Upgrade")

#define HOP_BY_HOP_ENTRY(literal) HEADER_NAME(literal),
#define HOP_BY_HOP_LENGTH(literal) | (UINT32_C(1) << (sizeof(literal) - 1))

static const struct header_name hop_by_hop_headers[] = {
	HOP_BY_HOP_NAMES(HOP_BY_HOP_ENTRY)
};

/* Bit n is set when a hop-by-hop name has n bytes (all have fewer than 32). */
static const uint32_t hop_by_hop_lengths = 0 HOP_BY_HOP_NAMES(HOP_BY_HOP_LENGTH);

#define N_HOP_BY_HOP (sizeof(hop_by_hop_headers) / sizeof(hop_by_hop_headers[0]))

/* The token characters of RFC 9110 section 5.6.2 (letters, digits and
 * !#$%&'*+-.^_`|~), as bit c % 64 of TOKEN_BITS[c / 64] for each ASCII
 * code c. */
static const uint64_t TOKEN_BITS[2] = {0x03ff6cfa00000000, 0x57ffffffc7fffffe};

/* Bytes of text in a block of names and values, unless a header needs
 * more: about a dozen typical headers. */
#define HEADER_TEXT_BLOCK 1000

/* Items at the start of a list's first block, before they move to an
 * array of their own: as many as a plain request or reply has. The block
 * stays within the sizes of glibc's thread cache (up to 1032 bytes),
 * because a larger first block made malloc() slower (callgrind). */
#define FIRST_ITEMS 8

/* A block of header text, linked to the block filled before it. The first
 * block of a list starts with its first FIRST_ITEMS items. */
struct tg_header_text {
	struct tg_header_text *older;
	size_t size;                    /* bytes of text */
	size_t used;
	_Alignas(struct tg_header) char bytes[];
};

void
tg_headers_init(struct tg_headers *h)
{
	h->items = NULL;
	h->count = 0;
	h->capacity = 0;
	h->text = NULL;
	h->items_in_text = 0;
}

void
tg_headers_free(struct tg_headers *h)
{
	struct tg_header_text *block = h->text;

	while (block != NULL) {
		struct tg_header_text *older = block->older;

		free(block);
		block = older;
	}
	if (!h->items_in_text)
		free(h->items);
	tg_headers_init(h);
}

/* Reserve need bytes of text in h. Returns their place, or NULL when out of
 * memory. */
static char *
text_room(struct tg_headers *h, size_t need)
{
	struct tg_header_text *block = h->text;
	size_t size;

	if (block == NULL || block->size - block->used < need) {
		size = need > HEADER_TEXT_BLOCK ? need : HEADER_TEXT_BLOCK;
		block = malloc(sizeof(*block) + size);
		if (block == NULL)
			return NULL;
		block->older = h->text;
		block->size = size;
		block->used = 0;
		h->text = block;
	}
	block->used += need;
	return block->bytes + block->used - need;
}

/* Give the empty list h its first block, whose first bytes hold
 * FIRST_ITEMS items: one allocation for most lists. Returns 0, or -1 when
 * out of memory. */
static int
start_list(struct tg_headers *h)
{
	struct tg_header_text *block = malloc(sizeof(*block) + HEADER_TEXT_BLOCK);

	_Static_assert(FIRST_ITEMS * sizeof(struct tg_header) < HEADER_TEXT_BLOCK / 2,
	               "the first block keeps room for text");
	if (block == NULL)
		return -1;
	block->older = NULL;
	block->size = HEADER_TEXT_BLOCK;
	block->used = FIRST_ITEMS * sizeof(struct tg_header);
	h->text = block;
	h->items = (struct tg_header *)(void *)block->bytes;
	h->capacity = FIRST_ITEMS;
	h->items_in_text = 1;
	return 0;
}

/* Double the room for items, in an array of their own. Returns 0, or -1
 * when out of memory. */
static int
grow_items(struct tg_headers *h)
{
	size_t capacity = h->capacity * 2;
	struct tg_header *items;

	if (h->items_in_text) {
		items = malloc(capacity * sizeof(*items));
		if (items != NULL)
			memcpy(items, h->items, h->count * sizeof(*items));
	} else {
		items = realloc(h->items, capacity * sizeof(*items));
	}
	if (items == NULL)
		return -1;
	h->items = items;
	h->capacity = capacity;
	h->items_in_text = 0;
	return 0;
}

/* Append a copy of the header of exactly these bytes. */
static int
add_exact(struct tg_headers *h, const char *name, size_t name_len, const char *value,
          size_t value_len)
{
	struct tg_header *item;
	char *text;

	if (h->capacity == 0 && start_list(h) != 0)
		return -1;
	if (h->count == h->capacity && grow_items(h) != 0)
		return -1;

	text = text_room(h, name_len + value_len + 2);
	if (text == NULL)
		return -1;

	item = &h->items[h->count];
	item->name = text;
	item->name_len = name_len;
	memcpy(item->name, name, name_len);
	item->name[name_len] = '\0';
	item->value = text + name_len + 1;
	item->value_len = value_len;
	memcpy(item->value, value, value_len);
	item->value[value_len] = '\0';
	h->count++;
	return 0;
}

int
tg_headers_add(struct tg_headers *h, const char *name, size_t name_len,
               const char *value, size_t value_len)
{
	return add_exact(h, name, strnlen(name, name_len), value, strnlen(value, value_len));
}

int
tg_headers_add_parts(struct tg_headers *h, const struct tg_header_part *name,
                     const struct tg_header_part *value)
{
	size_t value_len = value->len;

	/* llhttp leaves out the whitespace before a value but keeps what
	 * follows it, which RFC 9110 section 5.5 excludes from the value: routes
	 * would compare "acme " where an upstream, which trims it, reads "acme".
	 * llhttp rejects every control character but HTAB in a value, so a
	 * byte up to ' ' is a space or a tab: one test per header. */
	while (value_len > 0 && (unsigned char)value->at[value_len - 1] <= ' ')
		value_len--;

	/* An empty part may have no text at all. */
	return add_exact(h, name->len > 0 ? name->at : "", name->len,
	                 value_len > 0 ? value->at : "", value_len);
}

const char *
tg_headers_find(const struct tg_headers *h, const char *name, size_t len)
{
	for (size_t i = 0; i < h->count; i++) {
		if (tg_header_named(&h->items[i], name, len))
			return h->items[i].value;
	}
	return NULL;
}

int
tg_headers_value_is(const struct tg_headers *h, const char *name, size_t len,
                    const char *value)
{
	const char *rest = value;
	int found = 0;

	for (size_t i = 0; i < h->count; i++) {
		const struct tg_header *hd = &h->items[i];

		if (!tg_header_named(hd, name, len))
			continue;
		if (found && strncmp(rest, ", ", 2) != 0)
			return 0;
		rest += found ? 2 : 0;

		/* A value has no NUL, so a shorter rest differs at its end. */
		if (strncmp(rest, hd->value, hd->value_len) != 0)
			return 0;
		rest += hd->value_len;
		found = 1;
	}
	return found && *rest == '\0';
}

size_t
tg_headers_count(const struct tg_headers *h, const char *name)
{
	size_t len = strlen(name);
	size_t n = 0;

	for (size_t i = 0; i < h->count; i++) {
		if (tg_header_named(&h->items[i], name, len))
			n++;
	}
	return n;
}

size_t
tg_headers_remove(struct tg_headers *h, const char *name)
{
	size_t len = strlen(name);
	size_t kept = 0;
	size_t removed;

	for (size_t i = 0; i < h->count; i++) {
		if (tg_header_named(&h->items[i], name, len))
			continue;
		h->items[kept++] = h->items[i];
	}
	removed = h->count - kept;
	h->count = kept;
	return removed;
}

int
tg_bytes_append(char **buf, size_t *len, size_t *cap, const char *at, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t grown_cap = *cap ? *cap : 64;
		char *grown;

		while (grown_cap < *len + n + 1)
			grown_cap *= 2;
		grown = realloc(*buf, grown_cap);
		if (grown == NULL)
			return -1;
		*buf = grown;
		*cap = grown_cap;
	}
	memcpy(*buf + *len, at, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

/* Append len bytes from text to the part's own buffer, where its text
 * then is. */
static int
append_own(struct tg_header_part *p, const char *text, size_t len)
{
	if (tg_bytes_append(&p->buf, &p->len, &p->cap, text, len) != 0)
		return -1;
	p->at = p->buf;
	return 0;
}

int
tg_header_part_join(struct tg_header_part *p, const char *at, size_t len)
{
	if (tg_header_part_keep(p) != 0)
		return -1;
	return append_own(p, at, len);
}

int
tg_header_part_keep(struct tg_header_part *p)
{
	size_t len = p->len;

	if (len == 0 || p->at == p->buf)
		return 0;
	p->len = 0;
	return append_own(p, p->at, len);
}

void
tg_header_part_free(struct tg_header_part *p)
{
	free(p->buf);
	memset(p, 0, sizeof(*p));
}

/* Whether ch is a token character. A bit test, because each byte of every
 * header name is checked: isalnum() and strchr() cost about 200
 * instructions per name (callgrind). */
static int
is_token_char(unsigned char ch)
{
	return ch < 128 && (TOKEN_BITS[ch / 64] >> (ch % 64) & 1);
}

int
tg_header_name_valid(const char *name, size_t len)
{
	if (name == NULL || len == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (!is_token_char((unsigned char)name[i]))
			return 0;
	}
	return 1;
}

int
tg_header_value_valid(const char *value, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (value[i] == '\r' || value[i] == '\n' || value[i] == '\0')
			return 0;
	}
	return 1;
}

const char *
tg_header_list_next(const char **cursor, size_t *len)
{
	const char *p = *cursor;
	const char *start, *end;

	while (*p == ' ' || *p == '\t' || *p == ',')
		p++;
	if (*p == '\0') {
		*cursor = p;
		return NULL;
	}

	start = p;
	while (*p != '\0' && *p != ',')
		p++;
	end = p;
	while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
		end--;

	*cursor = p;
	*len = (size_t)(end - start);
	return start;
}

int
tg_header_list_has(const char *value, const char *token)
{
	size_t token_len = strlen(token);
	const char *cursor = value;
	const char *element;
	size_t len;

	while ((element = tg_header_list_next(&cursor, &len)) != NULL) {
		if (len == token_len && strncasecmp(element, token, token_len) == 0)
			return 1;
	}
	return 0;
}

const char *
tg_headers_content_coding(const struct tg_headers *h, size_t *len)
{
	for (size_t i = 0; i < h->count; i++) {
		const char *cursor = h->items[i].value;
		const char *coding;

		if (!tg_header_is(&h->items[i], "Content-Encoding"))
			continue;
		while ((coding = tg_header_list_next(&cursor, len)) != NULL) {
			if (*len != 8 || strncasecmp(coding, "identity", 8) != 0)
				return coding;
		}
	}
	return NULL;
}

/* Append a Connection value and a comma to the list in *list, which
 * starts as the caller's stack buffer and moves to the heap only when a
 * value does not fit. Returns 0, or -1 when out of memory. */
static int
append_token_list(char **list, size_t *len, size_t *size, char *stack,
                  const struct tg_header *hd)
{
	size_t need = *len + hd->value_len + 2;         /* a comma and the NUL */
	char *grown;

	if (need > *size) {
		grown = *list == stack ? malloc(need * 2) : realloc(*list, need * 2);
		if (grown == NULL)
			return -1;
		if (*list == stack)
			memcpy(grown, stack, *len);
		*list = grown;
		*size = need * 2;
	}
	memcpy(*list + *len, hd->value, hd->value_len);
	*len += hd->value_len;
	(*list)[(*len)++] = ',';
	(*list)[*len] = '\0';
	return 0;
}

/* Remove the headers that Connection names, before Connection itself goes.
 * A client may send Connection more than once, so the tokens of every line
 * are copied into one list first, which strtok_r() then cuts up. */
static void
strip_connection_tokens(struct tg_headers *h)
{
	char stack[256];
	char *list = stack;
	size_t len = 0, size = sizeof(stack);
	char *token, *save = NULL;

	stack[0] = '\0';
	for (size_t i = 0; i < h->count; i++) {
		if (tg_header_is(&h->items[i], "Connection") &&
		    append_token_list(&list, &len, &size, stack, &h->items[i]) != 0)
			break;          /* out of memory: strip what was listed */
	}
	for (token = strtok_r(list, ", \t", &save); token != NULL;
	     token = strtok_r(NULL, ", \t", &save))
		tg_headers_remove(h, token);
	if (list != stack)
		free(list);
}

/* Inline: the loop of tg_headers_strip_hop_by_hop() calling it for each
 * header cost about 110 instructions per request (callgrind). */
static inline int
is_hop_by_hop(const struct tg_header *hd)
{
	/* Most names have a length that no hop-by-hop name has: Host,
	 * Content-Type, Content-Length, Authorization, Date. */
	if (hd->name_len >= 32 || !(hop_by_hop_lengths >> hd->name_len & 1))
		return 0;
	for (size_t i = 0; i < N_HOP_BY_HOP; i++) {
		if (tg_header_named(hd, hop_by_hop_headers[i].name, hop_by_hop_headers[i].len))
			return 1;
	}
	return 0;
}

int
tg_header_name_hop_by_hop(const char *name, size_t len)
{
	/* is_hop_by_hop() reads the name only. */
	const struct tg_header hd = {.name = (char *)name, .name_len = len};

	return is_hop_by_hop(&hd);
}

void
tg_headers_strip_hop_by_hop(struct tg_headers *h)
{
	size_t kept = 0;

	/* Most requests have no Connection header; only those pay for
	 * collecting the names it lists. */
	if (tg_headers_get(h, "Connection") != NULL)
		strip_connection_tokens(h);

	for (size_t i = 0; i < h->count; i++) {
		if (is_hop_by_hop(&h->items[i]))
			continue;
		h->items[kept++] = h->items[i];
	}
	h->count = kept;
}

void
tg_head_start(struct tg_head *head, struct evbuffer *out)
{
	head->out = out;
	head->len = 0;
	head->failed = 0;
}

/* Write the gathered text to the evbuffer. */
static void
head_flush(struct tg_head *head)
{
	if (head->len > 0 && evbuffer_add(head->out, head->buf, head->len) != 0)
		head->failed = 1;
	head->len = 0;
}

/* Append text that does not fit in the rest of buf: the gathered text
 * goes first, then text that buf cannot take goes straight to out. */
void
tg_head_add_long(struct tg_head *head, const char *text, size_t len)
{
	head_flush(head);
	if (len >= sizeof(head->buf)) {
		if (evbuffer_add(head->out, text, len) != 0)
			head->failed = 1;
		return;
	}
	memcpy(head->buf + head->len, text, len);
	head->len += len;
}

void
tg_head_line(struct tg_head *head, const char *name, size_t name_len, const char *value,
             size_t value_len)
{
	tg_head_add(head, name, name_len);
	tg_head_add(head, ": ", 2);
	tg_head_add(head, value, value_len);
	tg_head_add(head, "\r\n", 2);
}

void
tg_head_number(struct tg_head *head, const char *name, size_t name_len,
               unsigned long long value)
{
	char digits[24];
	size_t start = sizeof(digits);

	do {
		digits[--start] = (char)('0' + value % 10);
		value /= 10;
	} while (value > 0);
	tg_head_line(head, name, name_len, digits + start, sizeof(digits) - start);
}

int
tg_head_end(struct tg_head *head)
{
	head_flush(head);
	return head->failed ? -1 : 0;
}

int
tg_header_write(struct evbuffer *out, const char *name, const char *value)
{
	struct tg_head head;

	tg_head_start(&head, out);
	tg_head_line(&head, name, strlen(name), value, strlen(value));
	return tg_head_end(&head);
}

/* The credential header names, once for the names and once with their
 * lengths, which the request path compares first. */
#define CREDENTIAL_NAMES(X) X("Authorization") X("x-api-key") X("api-key")

#define CREDENTIAL_STRING(literal) literal,
#define CREDENTIAL_ENTRY(literal) HEADER_NAME(literal),

const char *const tg_credential_headers[TG_N_CREDENTIAL_HEADERS] = {
	CREDENTIAL_NAMES(CREDENTIAL_STRING)
};

static const struct header_name credential_names[TG_N_CREDENTIAL_HEADERS] = {
	CREDENTIAL_NAMES(CREDENTIAL_ENTRY)
};

int
tg_header_is_credential(const struct tg_header *hd)
{
	for (size_t i = 0; i < TG_N_CREDENTIAL_HEADERS; i++) {
		if (tg_header_named(hd, credential_names[i].name, credential_names[i].len))
			return 1;
	}
	return 0;
}

/* The starts of the key lines, indexed by enum tg_key_header. */
static const char *const key_line_starts[] = {
	[TG_KEY_AUTHORIZATION] = "Authorization: Bearer ",
	[TG_KEY_X_API_KEY] = "x-api-key: ",
	[TG_KEY_API_KEY] = "api-key: ",
};

const char *
tg_key_line_start(enum tg_key_header which)
{
	assert((size_t)which < sizeof(key_line_starts) / sizeof(key_line_starts[0]));
	return key_line_starts[which];
}

/* Headers of the client request that the gateway sets itself. With an
 * api_key, that is every credential header, not only the one the key goes
 * in: a client key must not reach the backend, nor authenticate there
 * instead of the configured one. With gateway keys, the credential headers
 * go too, api_key or not. */
static int
is_rewritten_request_header(const struct tg_header *hd, const struct tg_upstream_rewrite *rw)
{
	if (tg_header_is(hd, "Host") ||
	    tg_header_is(hd, "Accept-Encoding") ||
	    tg_header_is(hd, "Content-Length") ||
	    tg_header_is(hd, "X-Forwarded-For") ||
	    tg_header_is(hd, "Forwarded") ||
	    tg_header_is(hd, "X-Forwarded-Proto") ||
	    tg_header_is(hd, "X-Request-Id") ||
	    tg_header_is(hd, "Expect"))
		return 1;
	if (rw->traceparent != NULL && tg_header_is(hd, "traceparent"))
		return 1;
	if (rw->drop_tracestate && tg_header_is(hd, "tracestate"))
		return 1;
	return (rw->api_key != NULL || rw->drop_credentials) && tg_header_is_credential(hd);
}

/* The forwarding lists that the gateway extends, as bits of a set of the
 * ones a client sent. */
enum forwarding_list {
	LIST_X_FORWARDED_FOR = 1 << 0,
	LIST_FORWARDED = 1 << 1,
};

/* The forwarding list that hd is, or 0. */
static unsigned
forwarding_list_of(const struct tg_header *hd)
{
	if (tg_header_named(hd, "X-Forwarded-For", 15))
		return LIST_X_FORWARDED_FOR;
	if (tg_header_named(hd, "Forwarded", 9))
		return LIST_FORWARDED;
	return 0;
}

/* Write every value of the header name (name_len bytes) that the client
 * sent, in their order, each followed by ", ", so that no hop of the chain
 * is lost when the client sent the header twice. */
static void
write_client_values(struct tg_head *head, const struct tg_headers *client_headers,
                    const char *name, size_t name_len)
{
	for (size_t i = 0; i < client_headers->count; i++) {
		const struct tg_header *hd = &client_headers->items[i];

		if (!tg_header_named(hd, name, name_len))
			continue;
		tg_head_add(head, hd->value, hd->value_len);
		tg_head_add(head, ", ", 2);
	}
}

/* Whether the address text ip (len bytes) is an IPv6 address rather than
 * an IPv4 one or "unknown": IPv6 has a ":" in its first five bytes, after
 * at most four hexadecimal digits. */
static int
is_ipv6_text(const char *ip, size_t len)
{
	for (size_t i = 0; i < len && i < 5; i++) {
		if (ip[i] == ':')
			return 1;
	}
	return 0;
}

/* Write X-Forwarded-For and Forwarded (RFC 7239): for each, the client's
 * values (sent is the set of lists it sent), then an element for this hop
 * with the client's address, and in Forwarded the protocol it used. An
 * IPv6 address goes in brackets and quotes there: the grammar of section 6
 * lets no ":" stand in a token. An IPv4 address, or "unknown", stays a
 * token. Most clients send neither list, and then no loop runs. */
static void
write_forwarding_lists(struct tg_head *head, const struct tg_headers *client_headers,
                       unsigned sent, const char *client_ip, const char *proto)
{
	size_t ip_len = strlen(client_ip);
	int ipv6 = is_ipv6_text(client_ip, ip_len);

	tg_head_add(head, "X-Forwarded-For: ", 17);
	if (sent & LIST_X_FORWARDED_FOR)
		write_client_values(head, client_headers, "X-Forwarded-For", 15);
	tg_head_add(head, client_ip, ip_len);

	tg_head_add(head, "\r\nForwarded: ", 13);
	if (sent & LIST_FORWARDED)
		write_client_values(head, client_headers, "Forwarded", 9);
	if (ipv6)
		tg_head_add(head, "for=\"[", 6);
	else
		tg_head_add(head, "for=", 4);
	tg_head_add(head, client_ip, ip_len);
	if (ipv6)
		tg_head_add(head, "]\"", 2);
	tg_head_add(head, ";proto=", 7);
	tg_head_add(head, proto, strlen(proto));
	tg_head_add(head, "\r\n", 2);
}

int
tg_headers_write_upstream_request(struct evbuffer *out, const char *method,
                                  const char *target,
                                  const struct tg_headers *client_headers,
                                  const struct tg_upstream_rewrite *rw,
                                  size_t body_len)
{
	struct tg_head head;
	unsigned sent_lists = 0;

	tg_head_start(&head, out);
	tg_head_add(&head, method, strlen(method));
	tg_head_add(&head, " ", 1);
	if (rw->target_prefix != NULL)
		tg_head_add(&head, rw->target_prefix, strlen(rw->target_prefix));
	tg_head_add(&head, target, strlen(target));
	tg_head_add(&head, " HTTP/1.1\r\n", 11);
	TG_HEAD_LINE(&head, "Host", rw->host);

	/* The lists a client sends are noted here, where their lines are
	 * left out, so that write_forwarding_lists() loops only for those. */
	for (size_t i = 0; i < client_headers->count; i++) {
		const struct tg_header *hd = &client_headers->items[i];

		if (is_rewritten_request_header(hd, rw)) {
			sent_lists |= forwarding_list_of(hd);
			continue;
		}
		tg_head_line(&head, hd->name, hd->name_len, hd->value, hd->value_len);
	}

	if (rw->api_key != NULL) {
		const char *start = tg_key_line_start(rw->key_header);

		tg_head_add(&head, start, strlen(start));
		tg_head_add(&head, rw->api_key, strlen(rw->api_key));
		tg_head_add(&head, "\r\n", 2);
	}
	if (rw->traceparent != NULL)
		TG_HEAD_LINE(&head, "traceparent", rw->traceparent);
	if (rw->client_ip != NULL)
		write_forwarding_lists(&head, client_headers, sent_lists, rw->client_ip,
		                       rw->proto);
	TG_HEAD_LINE(&head, "X-Forwarded-Proto", rw->proto);
	TG_HEAD_LINE(&head, "X-Request-Id", rw->request_id);
	/* The gateway reads every reply (usage, filters, cache) and cannot
	 * read a compressed one, so it requests identity whatever the client
	 * accepts. Replies reach the client uncompressed. */
	tg_head_add(&head, "Accept-Encoding: identity\r\n", 27);
	tg_head_number(&head, "Content-Length", 14, body_len);
	tg_head_add(&head, "\r\n", 2);
	return tg_head_end(&head);
}
