/*
 * Unit tests for header lists and the upstream request head.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "headers.h"

static char *
buffer_text(struct evbuffer *buf)
{
	size_t len = evbuffer_get_length(buf);
	char *text = malloc(len + 1);

	evbuffer_copyout(buf, text, len);
	text[len] = '\0';
	return text;
}

static void
add(struct tg_headers *h, const char *name, const char *value)
{
	ck_assert_int_eq(tg_headers_add(h, name, strlen(name), value, strlen(value)), 0);
}

START_TEST(get_is_case_insensitive)
{
	struct tg_headers h;

	tg_headers_init(&h);
	add(&h, "Content-Type", "application/json");
	ck_assert_str_eq(tg_headers_get(&h, "content-type"), "application/json");
	ck_assert_ptr_null(tg_headers_get(&h, "Content-Length"));
	tg_headers_free(&h);
}
END_TEST

START_TEST(remove_drops_every_copy)
{
	struct tg_headers h;

	tg_headers_init(&h);
	add(&h, "X-A", "1");
	add(&h, "x-a", "2");
	add(&h, "X-B", "3");
	ck_assert_uint_eq(tg_headers_remove(&h, "X-A"), 2);
	ck_assert_uint_eq(h.count, 1);
	ck_assert_str_eq(h.items[0].name, "X-B");
	tg_headers_free(&h);
}
END_TEST

/* Several lines of a name compare as their values joined with ", ". */
START_TEST(value_is_joins_lines)
{
	struct tg_headers h;

	tg_headers_init(&h);
	ck_assert_int_eq(tg_headers_value_is(&h, "X-T", 3, ""), 0);
	add(&h, "x-t", "a");
	add(&h, "Other", "z");
	ck_assert_int_eq(tg_headers_value_is(&h, "X-T", 3, "a"), 1);
	ck_assert_int_eq(tg_headers_value_is(&h, "X-T", 3, "A"), 0);
	ck_assert_int_eq(tg_headers_value_is(&h, "X-T", 3, "ab"), 0);
	ck_assert_int_eq(tg_headers_value_is(&h, "X-T", 3, ""), 0);
	add(&h, "X-T", "b");
	ck_assert_int_eq(tg_headers_value_is(&h, "X-T", 3, "a"), 0);
	ck_assert_int_eq(tg_headers_value_is(&h, "X-T", 3, "a, b"), 1);
	ck_assert_int_eq(tg_headers_value_is(&h, "X-T", 3, "a,b"), 0);
	ck_assert_int_eq(tg_headers_value_is(&h, "X-T", 3, "a, b, "), 0);
	tg_headers_free(&h);
}
END_TEST

START_TEST(hop_by_hop_names)
{
	ck_assert_int_eq(tg_header_name_hop_by_hop("connection", 10), 1);
	ck_assert_int_eq(tg_header_name_hop_by_hop("Transfer-Encoding", 17), 1);
	ck_assert_int_eq(tg_header_name_hop_by_hop("te", 2), 1);
	ck_assert_int_eq(tg_header_name_hop_by_hop("Connectio", 9), 0);
	ck_assert_int_eq(tg_header_name_hop_by_hop("X-Tenant", 8), 0);
}
END_TEST

START_TEST(grows_past_initial_capacity)
{
	struct tg_headers h;
	char name[16];

	tg_headers_init(&h);
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "X-%d", i);
		add(&h, name, "v");
	}
	ck_assert_uint_eq(h.count, 100);
	ck_assert_str_eq(tg_headers_get(&h, "x-99"), "v");
	tg_headers_free(&h);
}
END_TEST

/* Headers whose text fills several blocks, one larger than a block, keep
 * their names and values through removals and the growth of the list. */
START_TEST(text_spans_blocks)
{
	static char long_value[5001];
	struct tg_headers h;
	char name[16], value[64];

	memset(long_value, 'L', sizeof(long_value) - 1);
	tg_headers_init(&h);
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "X-%d", i);
		snprintf(value, sizeof(value), "value %d %.*s", i, i % 40, long_value);
		add(&h, name, i == 150 ? long_value : value);
	}
	for (int i = 0; i < 300; i += 3) {
		snprintf(name, sizeof(name), "x-%d", i);
		ck_assert_uint_eq(tg_headers_remove(&h, name), 1);
	}

	ck_assert_uint_eq(h.count, 200);
	for (int i = 0; i < 300; i++) {
		const char *got;

		snprintf(name, sizeof(name), "X-%d", i);
		snprintf(value, sizeof(value), "value %d %.*s", i, i % 40, long_value);
		got = tg_headers_get(&h, name);
		if (i % 3 == 0)
			ck_assert_ptr_null(got);
		else
			ck_assert_str_eq(got, i == 150 ? long_value : value);
	}
	tg_headers_free(&h);
}
END_TEST

START_TEST(value_validity)
{
	ck_assert_int_eq(tg_header_value_valid("plain value", 11), 1);
	ck_assert_int_eq(tg_header_value_valid("a\rb", 3), 0);
	ck_assert_int_eq(tg_header_value_valid("a\nb", 3), 0);
	ck_assert_int_eq(tg_header_value_valid("a\0b", 3), 0);
	ck_assert_int_eq(tg_header_value_valid("", 0), 1);
}
END_TEST

START_TEST(name_validity)
{
	ck_assert_int_eq(tg_header_name_valid("Content-Type", 12), 1);
	ck_assert_int_eq(tg_header_name_valid("x-a!#$%&'*+.^_`|~9", 18), 1);
	ck_assert_int_eq(tg_header_name_valid("Bad Name", 8), 0);
	ck_assert_int_eq(tg_header_name_valid("", 0), 0);
	ck_assert_int_eq(tg_header_name_valid("a:b", 3), 0);
	ck_assert_int_eq(tg_header_name_valid("a\0b", 3), 0);
	ck_assert_int_eq(tg_header_name_valid("caf\xc3\xa9", 5), 0);
	ck_assert_int_eq(tg_header_name_valid("a\"b", 3), 0);
}
END_TEST

/* Every byte is a name of its own exactly when RFC 9110 calls it a token
 * character: a letter, a digit or one of !#$%&'*+-.^_`|~. */
START_TEST(name_validity_every_byte)
{
	static const char specials[] = "!#$%&'*+-.^_`|~";

	for (int c = 0; c < 256; c++) {
		char name[2] = {(char)c, 'a'};
		int letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
		int digit = c >= '0' && c <= '9';
		int token = c != 0 && (letter || digit || memchr(specials, c, sizeof(specials) - 1));

		ck_assert_msg(tg_header_name_valid(name, 2) == token, "byte %d", c);
	}
}
END_TEST

START_TEST(list_has_token)
{
	ck_assert_int_eq(tg_header_list_has("keep-alive, Upgrade", "upgrade"), 1);
	ck_assert_int_eq(tg_header_list_has(" close ", "close"), 1);
	ck_assert_int_eq(tg_header_list_has("closed", "close"), 0);
	ck_assert_int_eq(tg_header_list_has("", "close"), 0);
	ck_assert_int_eq(tg_header_list_has("a,,b", "b"), 1);
}
END_TEST

/* The coding that Content-Encoding lines name besides identity, as the
 * gateway's 415 and 502 quote it, or NULL. */
static const char *
content_coding(const char *first, const char *second, char *out, size_t size)
{
	struct tg_headers h;
	const char *coding;
	size_t len;

	tg_headers_init(&h);
	add(&h, "Content-Type", "application/json");
	if (first != NULL)
		add(&h, "content-encoding", first);
	if (second != NULL)
		add(&h, "Content-Encoding", second);
	coding = tg_headers_content_coding(&h, &len);
	if (coding != NULL)
		snprintf(out, size, "%.*s", (int)len, coding);
	tg_headers_free(&h);
	return coding != NULL ? out : NULL;
}

START_TEST(content_coding_other_than_identity)
{
	char out[64];

	ck_assert_ptr_null(content_coding(NULL, NULL, out, sizeof(out)));
	ck_assert_ptr_null(content_coding("", NULL, out, sizeof(out)));
	ck_assert_ptr_null(content_coding("identity", " IDENTITY ,", out, sizeof(out)));
	ck_assert_str_eq(content_coding("gzip", NULL, out, sizeof(out)), "gzip");
	ck_assert_str_eq(content_coding("identity , x-Compress ", NULL, out, sizeof(out)),
	                 "x-Compress");
	ck_assert_str_eq(content_coding("identity", "br", out, sizeof(out)), "br");
	ck_assert_str_eq(content_coding("identityx", NULL, out, sizeof(out)), "identityx");
}
END_TEST

START_TEST(list_next_trims_and_skips_empty)
{
	const char *cursor = " gzip ;q=1 ,, \tchunked\t,";
	const char *element;
	size_t len;

	element = tg_header_list_next(&cursor, &len);
	ck_assert_ptr_nonnull(element);
	ck_assert_uint_eq(len, 9);
	ck_assert_int_eq(strncmp(element, "gzip ;q=1", len), 0);
	element = tg_header_list_next(&cursor, &len);
	ck_assert_ptr_nonnull(element);
	ck_assert_uint_eq(len, 7);
	ck_assert_int_eq(strncmp(element, "chunked", len), 0);
	ck_assert_ptr_null(tg_header_list_next(&cursor, &len));
	ck_assert_ptr_null(tg_header_list_next(&cursor, &len));
}
END_TEST

START_TEST(add_keeps_lengths)
{
	struct tg_headers h;

	tg_headers_init(&h);
	add(&h, "X-Name", "value");
	ck_assert_int_eq(tg_headers_add(&h, "X-Cut\0tail", 10, "a\0b", 3), 0);
	ck_assert_uint_eq(h.items[0].name_len, 6);
	ck_assert_uint_eq(h.items[0].value_len, 5);
	ck_assert_str_eq(h.items[1].name, "X-Cut");
	ck_assert_uint_eq(h.items[1].name_len, 5);
	ck_assert_str_eq(h.items[1].value, "a");
	ck_assert_uint_eq(h.items[1].value_len, 1);
	ck_assert_str_eq(tg_headers_get(&h, "x-cut"), "a");
	tg_headers_free(&h);
}
END_TEST

START_TEST(part_of_one_piece_stays_in_input)
{
	const char input[] = "Content-Type";
	struct tg_header_part part = {0};

	ck_assert_int_eq(tg_header_part_add(&part, input, 12), 0);
	ck_assert_ptr_eq(part.at, input);
	ck_assert_uint_eq(part.len, 12);
	ck_assert_ptr_null(part.buf);
	tg_header_part_free(&part);
}
END_TEST

START_TEST(part_pieces_joined)
{
	struct tg_header_part part = {0};

	ck_assert_int_eq(tg_header_part_add(&part, "Content-", 8), 0);
	ck_assert_int_eq(tg_header_part_add(&part, "Type", 4), 0);
	ck_assert_uint_eq(part.len, 12);
	ck_assert_ptr_eq(part.at, part.buf);
	ck_assert_str_eq(part.buf, "Content-Type");
	tg_header_part_free(&part);
}
END_TEST

/* The parser's input is drained between two reads: a kept piece must not
 * refer to it. */
START_TEST(part_kept_outlives_input)
{
	char input[16] = "Content-";
	struct tg_header_part part = {0};
	struct tg_headers h;

	ck_assert_int_eq(tg_header_part_add(&part, input, 8), 0);
	ck_assert_int_eq(tg_header_part_keep(&part), 0);
	memset(input, 'x', sizeof(input));
	ck_assert_int_eq(tg_header_part_add(&part, "Type", 4), 0);
	ck_assert_str_eq(part.buf, "Content-Type");

	tg_header_part_clear(&part);
	ck_assert_int_eq(tg_header_part_keep(&part), 0);
	ck_assert_int_eq(tg_header_part_add(&part, "Accept", 6), 0);
	ck_assert_int_eq(tg_header_part_keep(&part), 0);
	ck_assert_str_eq(part.buf, "Accept");

	tg_headers_init(&h);
	ck_assert_int_eq(tg_headers_add_parts(&h, &part, &(struct tg_header_part){0}), 0);
	ck_assert_str_eq(h.items[0].name, "Accept");
	ck_assert_str_eq(h.items[0].value, "");
	tg_headers_free(&h);
	tg_header_part_free(&part);
}
END_TEST

/* The spaces and tabs after a value are not part of it (RFC 9110 section
 * 5.5), so a route compares the value an upstream reads. */
START_TEST(parts_value_loses_trailing_whitespace)
{
	static const char *const values[] = {"acme ", "acme\t", "acme \t  ", "acme"};
	struct tg_header_part name = {.at = "x-tenant", .len = 8};
	struct tg_headers h;

	tg_headers_init(&h);
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		struct tg_header_part value = {.at = values[i], .len = strlen(values[i])};

		ck_assert_int_eq(tg_headers_add_parts(&h, &name, &value), 0);
		ck_assert_str_eq(h.items[i].value, "acme");
		ck_assert_uint_eq(h.items[i].value_len, 4);
	}
	ck_assert_int_eq(tg_headers_add_parts(&h, &name, &(struct tg_header_part){.at = " \t",
	                                                                     .len = 2}), 0);
	ck_assert_str_eq(h.items[4].value, "");
	ck_assert_int_eq(tg_headers_add_parts(&h, &name, &(struct tg_header_part){.at = "a b ",
	                                                                     .len = 4}), 0);
	ck_assert_str_eq(h.items[5].value, "a b");
	tg_headers_free(&h);
}
END_TEST

START_TEST(names_match_whole)
{
	struct tg_headers h;

	tg_headers_init(&h);
	add(&h, "Host", "a.example");
	ck_assert_int_eq(tg_header_is(&h.items[0], "HOST"), 1);
	ck_assert_int_eq(tg_header_is(&h.items[0], "Hos"), 0);
	ck_assert_int_eq(tg_header_is(&h.items[0], "Hosts"), 0);
	ck_assert_int_eq(tg_header_is(&h.items[0], "Post"), 0);
	ck_assert_ptr_null(tg_headers_get(&h, "Ho"));
	ck_assert_uint_eq(tg_headers_count(&h, "Host\0"), 1);
	ck_assert_uint_eq(tg_headers_count(&h, "Hosts"), 0);
	tg_headers_free(&h);
}
END_TEST

START_TEST(hop_by_hop_removed)
{
	static const char *const hop[] = {
		"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
		"Proxy-Authorization", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
	};
	struct tg_headers h;

	tg_headers_init(&h);
	for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
		add(&h, hop[i], "x");
	add(&h, "Connection", "X-Private, x-other");
	add(&h, "X-Private", "secret");
	add(&h, "X-Other", "1");
	add(&h, "Content-Type", "application/json");
	add(&h, "Authorization", "Bearer k");
	add(&h, "te", "trailers");
	add(&h, "TEX", "kept");
	add(&h, "Upgrades", "kept");

	tg_headers_strip_hop_by_hop(&h);
	ck_assert_uint_eq(h.count, 4);
	ck_assert_ptr_nonnull(tg_headers_get(&h, "Content-Type"));
	ck_assert_ptr_nonnull(tg_headers_get(&h, "Authorization"));
	ck_assert_ptr_nonnull(tg_headers_get(&h, "TEX"));
	ck_assert_ptr_nonnull(tg_headers_get(&h, "Upgrades"));
	tg_headers_free(&h);
}
END_TEST

/* Connection lists longer than the stack buffer, over several lines, and a
 * token naming Connection itself: every named header goes, others stay. */
START_TEST(connection_lists_of_any_length)
{
	struct tg_headers h;
	char list[2048] = "";
	char name[32];

	tg_headers_init(&h);
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "X-Named-%d", i);
		add(&h, name, "v");
		strcat(list, name);
		strcat(list, i % 10 == 9 ? "" : ", ");
		if (i % 10 == 9) {
			add(&h, "Connection", list);
			list[0] = '\0';
		}
	}
	add(&h, "connection", "Connection,\tX-Last");
	add(&h, "X-Last", "v");
	add(&h, "X-Named-100", "kept");

	tg_headers_strip_hop_by_hop(&h);
	ck_assert_uint_eq(h.count, 1);
	ck_assert_str_eq(tg_headers_get(&h, "X-Named-100"), "kept");
	tg_headers_free(&h);
}
END_TEST

/* The upstream head for the client's headers, with api_key sent in the
 * header key_header names. */
static char *
upstream_head_keyed(struct tg_headers *client, const char *api_key,
                    enum tg_key_header key_header)
{
	struct tg_upstream_rewrite rw = {
		.host = "api.example.test",
		.api_key = api_key,
		.key_header = key_header,
		.client_ip = "192.0.2.7",
		.proto = "https",
		.request_id = "req-1",
	};
	struct evbuffer *out = evbuffer_new();
	char *text;

	ck_assert_int_eq(tg_headers_write_upstream_request(out, "POST", "/v1/chat/completions",
	                                                   client, &rw, 42), 0);
	text = buffer_text(out);
	evbuffer_free(out);
	return text;
}

static char *
upstream_head(struct tg_headers *client, const char *api_key)
{
	return upstream_head_keyed(client, api_key, TG_KEY_AUTHORIZATION);
}

START_TEST(upstream_head_rewrites)
{
	struct tg_headers h;
	char *head;

	tg_headers_init(&h);
	add(&h, "Host", "gateway.local");
	add(&h, "Authorization", "Bearer client-key");
	add(&h, "Content-Length", "9999");
	add(&h, "X-Request-Id", "old");
	add(&h, "Content-Type", "application/json");

	head = upstream_head(&h, "backend-key");
	ck_assert_ptr_nonnull(strstr(head, "POST /v1/chat/completions HTTP/1.1\r\n"));
	ck_assert_ptr_nonnull(strstr(head, "Host: api.example.test\r\n"));
	ck_assert_ptr_null(strstr(head, "gateway.local"));
	ck_assert_ptr_nonnull(strstr(head, "Authorization: Bearer backend-key\r\n"));
	ck_assert_ptr_null(strstr(head, "client-key"));
	ck_assert_ptr_nonnull(strstr(head, "Content-Length: 42\r\n"));
	ck_assert_ptr_null(strstr(head, "9999"));
	ck_assert_ptr_nonnull(strstr(head, "X-Request-Id: req-1\r\n"));
	ck_assert_ptr_null(strstr(head, "old"));
	ck_assert_ptr_nonnull(strstr(head, "X-Forwarded-For: 192.0.2.7\r\n"));
	ck_assert_ptr_nonnull(strstr(head, "X-Forwarded-Proto: https\r\n"));
	ck_assert_ptr_nonnull(strstr(head, "Content-Type: application/json\r\n"));
	ck_assert_str_eq(head + strlen(head) - 4, "\r\n\r\n");
	free(head);
	tg_headers_free(&h);
}
END_TEST

START_TEST(upstream_head_exact_bytes)
{
	static const struct {
		size_t body_len;
		const char *content_length;
	} lengths[] = {
		{0, "0"}, {7, "7"}, {10, "10"}, {1234567890, "1234567890"},
		{SIZE_MAX, "18446744073709551615"},
	};
	struct tg_upstream_rewrite rw = {
		.target_prefix = "/openai",
		.host = "api.example.test", .api_key = "backend-key", .client_ip = "192.0.2.7",
		.proto = "https", .request_id = "req-1", .traceparent = "00-tp-01",
	};
	struct tg_headers h;
	char expected[1024];

	tg_headers_init(&h);
	add(&h, "Host", "gateway.local");
	add(&h, "content-type", "application/json");
	add(&h, "X-Forwarded-For", "203.0.113.1");
	add(&h, "Accept", "");
	add(&h, "Accept-Encoding", "gzip, br");

	for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
		struct evbuffer *out = evbuffer_new();
		char *head;

		ck_assert_int_eq(tg_headers_write_upstream_request(out, "POST", "/v1/x?y=1", &h,
		                                                   &rw, lengths[i].body_len), 0);
		head = buffer_text(out);
		snprintf(expected, sizeof(expected),
		         "POST /openai/v1/x?y=1 HTTP/1.1\r\n"
		         "Host: api.example.test\r\n"
		         "content-type: application/json\r\n"
		         "Accept: \r\n"
		         "Authorization: Bearer backend-key\r\n"
		         "traceparent: 00-tp-01\r\n"
		         "X-Forwarded-For: 203.0.113.1, 192.0.2.7\r\n"
		         "Forwarded: for=192.0.2.7;proto=https\r\n"
		         "X-Forwarded-Proto: https\r\n"
		         "X-Request-Id: req-1\r\n"
		         "Accept-Encoding: identity\r\n"
		         "Content-Length: %s\r\n\r\n", lengths[i].content_length);
		ck_assert_str_eq(head, expected);
		free(head);
		evbuffer_free(out);
	}
	tg_headers_free(&h);
}
END_TEST

/* Lines around the size of the buffer that a head gathers in come out
 * whole. */
START_TEST(header_lines_of_any_length)
{
	static const size_t value_lens[] = {
		0, 1, TG_HEAD_BUFFER - 20, TG_HEAD_BUFFER - 11, TG_HEAD_BUFFER - 10,
		TG_HEAD_BUFFER - 9, TG_HEAD_BUFFER, 2 * TG_HEAD_BUFFER + 7,
	};
	char value[2 * TG_HEAD_BUFFER + 8];
	char expected[2 * TG_HEAD_BUFFER + 32];

	for (size_t i = 0; i < sizeof(value_lens) / sizeof(value_lens[0]); i++) {
		size_t len = value_lens[i];
		struct evbuffer *out = evbuffer_new();
		char *line;

		memset(value, 'v', len);
		value[len] = '\0';
		snprintf(expected, sizeof(expected), "X-Long: %s\r\n", value);
		ck_assert_int_eq(tg_header_write(out, "X-Long", value), 0);
		line = buffer_text(out);
		ck_assert_str_eq(line, expected);
		free(line);
		evbuffer_free(out);
	}
}
END_TEST

enum { MAX_PIECE = TG_HEAD_BUFFER + 3 };

/* Add a piece of len bytes to head and to the text expected of it. */
static void
add_piece(struct tg_head *head, char *expected, size_t *used, size_t len)
{
	static char piece[MAX_PIECE];

	memset(piece, 'a' + (int)(len % 26), len);
	tg_head_add(head, piece, len);
	memcpy(expected + *used, piece, len);
	*used += len;
}

/* Pieces of many sizes, up to past the buffer, added after text already
 * in the evbuffer, arrive whole and in order, and nothing reaches the
 * evbuffer twice. */
START_TEST(head_pieces_keep_their_order)
{
	static char expected[64 * MAX_PIECE];
	struct evbuffer *out = evbuffer_new();
	struct tg_head head;
	size_t used = 4;
	char *text;

	evbuffer_add(out, "pre:", 4);
	memcpy(expected, "pre:", 4);
	tg_head_start(&head, out);
	for (size_t len = 1; len <= MAX_PIECE; len += len < 40 ? 1 : 97)
		add_piece(&head, expected, &used, len);
	add_piece(&head, expected, &used, TG_HEAD_BUFFER);
	add_piece(&head, expected, &used, 5);
	add_piece(&head, expected, &used, MAX_PIECE);
	add_piece(&head, expected, &used, 1);
	ck_assert_int_eq(tg_head_end(&head), 0);
	expected[used] = '\0';
	text = buffer_text(out);
	ck_assert_uint_eq(strlen(text), used);
	ck_assert(strcmp(text, expected) == 0);
	free(text);
	evbuffer_free(out);
}
END_TEST

/* Add every credential header a client may send, each in another case. */
static void
add_client_credentials(struct tg_headers *h)
{
	add(h, "authorization", "Bearer client-key");
	add(h, "X-Api-Key", "client-xkey");
	add(h, "API-KEY", "client-azkey");
}

START_TEST(upstream_head_keeps_client_key)
{
	struct tg_headers h;
	char *head;

	tg_headers_init(&h);
	add_client_credentials(&h);
	head = upstream_head(&h, NULL);
	ck_assert_ptr_nonnull(strstr(head, "authorization: Bearer client-key\r\n"));
	ck_assert_ptr_nonnull(strstr(head, "X-Api-Key: client-xkey\r\n"));
	ck_assert_ptr_nonnull(strstr(head, "API-KEY: client-azkey\r\n"));
	free(head);
	tg_headers_free(&h);
}
END_TEST

static const struct {
	enum tg_key_header key_header;
	const char *line;
} key_line_cases[] = {
	{TG_KEY_AUTHORIZATION, "\r\nAuthorization: Bearer backend-key\r\n"},
	{TG_KEY_X_API_KEY, "\r\nx-api-key: backend-key\r\n"},
	{TG_KEY_API_KEY, "\r\napi-key: backend-key\r\n"},
};

/* With an api_key, the head carries it in the chosen header, once, and
 * none of the client's credential headers, whichever header the key is
 * in. */
START_TEST(upstream_head_drops_client_credentials)
{
	struct tg_headers h;
	char *head;
	const char *key;

	tg_headers_init(&h);
	add_client_credentials(&h);
	add(&h, "Accept", "*/*");
	head = upstream_head_keyed(&h, "backend-key", key_line_cases[_i].key_header);
	ck_assert_ptr_nonnull(strstr(head, key_line_cases[_i].line));
	key = strstr(head, "backend-key");
	ck_assert_ptr_null(strstr(key + 1, "backend-key"));
	ck_assert_ptr_null(strstr(head, "client-"));
	ck_assert_ptr_nonnull(strstr(head, "Accept: */*\r\n"));
	free(head);
	tg_headers_free(&h);
}
END_TEST

/* With gateway keys, the client's credential headers carry gateway keys,
 * which a backend without api_key must not get either. */
START_TEST(upstream_head_drops_gateway_keys)
{
	struct tg_upstream_rewrite rw = {
		.host = "api.example.test", .drop_credentials = 1, .client_ip = "192.0.2.7",
		.proto = "http", .request_id = "req-1",
	};
	struct evbuffer *out = evbuffer_new();
	struct tg_headers h;
	char *head;

	tg_headers_init(&h);
	add_client_credentials(&h);
	add(&h, "Accept", "*/*");
	ck_assert_int_eq(tg_headers_write_upstream_request(out, "POST", "/v1/chat/completions",
	                                                   &h, &rw, 0), 0);
	head = buffer_text(out);
	ck_assert_ptr_null(strstr(head, "client-"));
	ck_assert_ptr_null(strcasestr(head, "authorization"));
	ck_assert_ptr_null(strcasestr(head, "api-key"));
	ck_assert_ptr_nonnull(strstr(head, "Accept: */*\r\n"));
	free(head);
	evbuffer_free(out);
	tg_headers_free(&h);
}
END_TEST

/* The gateway's own requests (moderation) have no client address. */
START_TEST(upstream_head_without_client_address)
{
	struct tg_upstream_rewrite rw = {
		.host = "moderation.test", .proto = "http", .request_id = "req-2",
	};
	struct tg_headers none;
	struct evbuffer *out = evbuffer_new();
	char *head;

	tg_headers_init(&none);
	ck_assert_int_eq(tg_headers_write_upstream_request(out, "POST", "/v1/moderations",
	                                                   &none, &rw, 2), 0);
	head = buffer_text(out);
	ck_assert_ptr_null(strstr(head, "X-Forwarded-For"));
	ck_assert_ptr_null(strstr(head, "Forwarded:"));
	ck_assert_ptr_nonnull(strstr(head, "X-Request-Id: req-2\r\n"));
	free(head);
	evbuffer_free(out);
}
END_TEST

START_TEST(upstream_head_appends_forwarded_for)
{
	struct tg_headers h;
	char *head;

	tg_headers_init(&h);
	add(&h, "X-Forwarded-For", "203.0.113.1");
	head = upstream_head(&h, NULL);
	ck_assert_ptr_nonnull(strstr(head, "X-Forwarded-For: 203.0.113.1, 192.0.2.7\r\n"));
	free(head);
	tg_headers_free(&h);
}
END_TEST

START_TEST(upstream_head_joins_every_forwarded_for)
{
	struct tg_headers h;
	char *head;

	tg_headers_init(&h);
	add(&h, "X-Forwarded-For", "203.0.113.1");
	add(&h, "Accept", "*/*");
	add(&h, "x-forwarded-for", "198.51.100.4, 198.51.100.5");
	head = upstream_head(&h, NULL);
	ck_assert_ptr_nonnull(strstr(head, "X-Forwarded-For: 203.0.113.1, 198.51.100.4, "
	                                   "198.51.100.5, 192.0.2.7\r\n"));
	free(head);
	tg_headers_free(&h);
}
END_TEST

/* Forwarded gets one element for this hop after the client's, whose
 * values pass in order as they came, as X-Forwarded-For's do. */
START_TEST(upstream_head_appends_forwarded)
{
	struct tg_headers h;
	char *head;

	tg_headers_init(&h);
	add(&h, "Forwarded", "for=203.0.113.1;proto=http");
	add(&h, "Accept", "*/*");
	add(&h, "forwarded", "for=\"[2001:db8::1]\", for=unknown");
	head = upstream_head(&h, NULL);
	ck_assert_ptr_nonnull(strstr(head, "Forwarded: for=203.0.113.1;proto=http, "
	                                   "for=\"[2001:db8::1]\", for=unknown, "
	                                   "for=192.0.2.7;proto=https\r\n"));
	ck_assert_ptr_null(strstr(head, "\r\nforwarded:"));
	free(head);
	tg_headers_free(&h);
}
END_TEST

/* RFC 7239 section 6 lets no ":" stand in a token: an IPv6 address is
 * bracketed and quoted. */
START_TEST(upstream_head_forwarded_ipv6)
{
	struct tg_upstream_rewrite rw = {
		.host = "api.example.test", .client_ip = "2001:db8::7", .proto = "http",
		.request_id = "req-3",
	};
	struct tg_headers none;
	struct evbuffer *out = evbuffer_new();
	char *head;

	tg_headers_init(&none);
	ck_assert_int_eq(tg_headers_write_upstream_request(out, "GET", "/v1/models", &none,
	                                                   &rw, 0), 0);
	head = buffer_text(out);
	ck_assert_ptr_nonnull(strstr(head, "\r\nForwarded: for=\"[2001:db8::7]\";proto=http\r\n"));
	ck_assert_ptr_nonnull(strstr(head, "\r\nX-Forwarded-For: 2001:db8::7\r\n"));
	free(head);
	evbuffer_free(out);
}
END_TEST

static Suite *
headers_suite(void)
{
	Suite *s = suite_create("headers");
	TCase *list = tcase_create("list");
	TCase *rewrite = tcase_create("rewrite");

	tcase_add_test(list, get_is_case_insensitive);
	tcase_add_test(list, remove_drops_every_copy);
	tcase_add_test(list, value_is_joins_lines);
	tcase_add_test(list, hop_by_hop_names);
	tcase_add_test(list, grows_past_initial_capacity);
	tcase_add_test(list, text_spans_blocks);
	tcase_add_test(list, add_keeps_lengths);
	tcase_add_test(list, part_of_one_piece_stays_in_input);
	tcase_add_test(list, part_pieces_joined);
	tcase_add_test(list, part_kept_outlives_input);
	tcase_add_test(list, parts_value_loses_trailing_whitespace);
	tcase_add_test(list, names_match_whole);
	tcase_add_test(list, value_validity);
	tcase_add_test(list, name_validity);
	tcase_add_test(list, name_validity_every_byte);
	tcase_add_test(list, list_has_token);
	tcase_add_test(list, list_next_trims_and_skips_empty);
	tcase_add_test(list, content_coding_other_than_identity);
	tcase_add_test(rewrite, hop_by_hop_removed);
	tcase_add_test(rewrite, connection_lists_of_any_length);
	tcase_add_test(rewrite, upstream_head_rewrites);
	tcase_add_test(rewrite, upstream_head_exact_bytes);
	tcase_add_test(rewrite, header_lines_of_any_length);
	tcase_add_test(rewrite, head_pieces_keep_their_order);
	tcase_add_test(rewrite, upstream_head_keeps_client_key);
	tcase_add_loop_test(rewrite, upstream_head_drops_client_credentials, 0,
	                    (int)(sizeof(key_line_cases) / sizeof(key_line_cases[0])));
	tcase_add_test(rewrite, upstream_head_appends_forwarded_for);
	tcase_add_test(rewrite, upstream_head_joins_every_forwarded_for);
	tcase_add_test(rewrite, upstream_head_appends_forwarded);
	tcase_add_test(rewrite, upstream_head_forwarded_ipv6);
	tcase_add_test(rewrite, upstream_head_drops_gateway_keys);
	tcase_add_test(rewrite, upstream_head_without_client_address);
	suite_add_tcase(s, list);
	suite_add_tcase(s, rewrite);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(headers_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
