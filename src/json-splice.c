/*
 * A JSON text written again with some string values replaced
 * (json-splice.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "filter-args.h"
#include "json-splice.h"

/* The offset of the opening quote of the string that ends at end (past
 * its closing quote) in raw. Every quote inside a JSON string is escaped,
 * that is after an odd number of backslashes, so the opening quote is the
 * last one before the closing quote that follows an even number. */
static size_t
string_start(const char *raw, size_t end)
{
	size_t q = end - 1;

	while (q-- > 0) {
		size_t backslashes = 0;

		if (raw[q] != '"')
			continue;
		while (backslashes < q && raw[q - 1 - backslashes] == '\\')
			backslashes++;
		if (backslashes % 2 == 0)
			return q;
	}
	return 0;       /* not reached for text that yajl read as JSON */
}

int
tg_splice_place(const char *raw, size_t raw_len, const char *text, size_t len, size_t end,
                struct tg_splice_place *place)
{
	/* yajl passes a value written without an escape in place, and one
	 * with an escape, decoded, from its own buffer. Only a string has an
	 * escape, and only a number can end a text without an end. In place,
	 * a string's text follows its opening quote, and a number never
	 * follows a quote in JSON. */
	if (text >= raw && text <= raw + raw_len && len <= (size_t)(raw + raw_len - text)) {
		size_t at = (size_t)(text - raw);

		place->string = at > 0 && raw[at - 1] == '"';
		place->from = place->string ? at - 1 : at;
		place->to = at + len + (place->string ? 1 : 0);
		return 0;
	}
	if (end == SIZE_MAX)
		return -1;
	place->string = 1;
	place->from = string_start(raw, end);
	place->to = end;
	return 0;
}

void
tg_splice_init(struct tg_splice *s, const char *raw, size_t raw_len)
{
	*s = (struct tg_splice){.raw = raw, .raw_len = raw_len};
}

void
tg_splice_string(struct tg_splice *s, struct tg_splice_place place, const char *text,
                 size_t len)
{
	tg_json_raw(&s->out, s->raw + s->done, place.from - s->done);
	tg_json_stringn(&s->out, text, len);
	s->done = place.to;
	s->changed = 1;
}

int
tg_splice_finish(struct tg_splice *s)
{
	tg_json_raw(&s->out, s->raw + s->done, s->raw_len - s->done);
	s->done = s->raw_len;
	return s->out.failed ? -1 : 0;
}

/* --- a tree's strings into its text -------------------------------------- */

/* The strings and numbers of a tree, in the order of its text. */
struct tree_values {
	json_t **items;
	size_t n, cap;
};

static int
add_value(struct tree_values *v, json_t *value)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? 2 * v->cap : 32;
		json_t **items = realloc(v->items, cap * sizeof(*items));

		if (items == NULL)
			return -1;
		v->items = items;
		v->cap = cap;
	}
	v->items[v->n++] = value;
	return 0;
}

/* Collect the strings and numbers inside value, which tg_args_values()
 * passes too; keys and literals it does not pass. jansson limits the depth
 * it parses to, so the recursion is bounded. */
static int
collect_values(struct tree_values *v, json_t *value)
{
	const char *key;
	size_t i;
	json_t *item;

	if (json_is_string(value) || json_is_number(value))
		return add_value(v, value);
	json_array_foreach(value, i, item) {
		if (collect_values(v, item) != 0)
			return -1;
	}
	json_object_foreach(value, key, item) {
		if (collect_values(v, item) != 0)
			return -1;
	}
	return 0;
}

/* The pairing of the text's values with the tree's. */
struct pairing {
	struct tg_splice splice;
	const struct tree_values *tree;
	size_t next;            /* the tree's value for the text's next one */
	int unpaired;
};

/* Pair the next value of the text with the tree's, and write the tree's
 * string in its place when the two differ. Returns nonzero to stop the
 * read. */
static int
pair_value(void *arg, const char *text, size_t len, size_t end)
{
	struct pairing *p = arg;
	struct tg_splice_place place;
	json_t *value;

	if (p->next == p->tree->n ||
	    tg_splice_place(p->splice.raw, p->splice.raw_len, text, len, end, &place) != 0) {
		p->unpaired = 1;
		return 1;
	}
	value = p->tree->items[p->next++];
	if (place.string && !json_is_string(value)) {
		p->unpaired = 1;
		return 1;
	}

	/* A number that a filter masked is a string in the tree now. */
	if (json_is_string(value) &&
	    (!place.string || json_string_length(value) != len ||
	     memcmp(json_string_value(value), text, len) != 0))
		tg_splice_string(&p->splice, place, json_string_value(value),
		                 json_string_length(value));
	return p->splice.out.failed;
}

int
tg_splice_tree(const char *raw, size_t raw_len, json_t *tree, struct tg_json_writer *out)
{
	struct tree_values values = {0};
	struct pairing p = {.tree = &values};
	int rc = -1;

	tg_splice_init(&p.splice, raw, raw_len);
	if (collect_values(&values, tree) == 0) {
		rc = tg_args_values(raw, raw_len, pair_value, NULL, &p);
		if (p.unpaired || rc == TG_ARGS_NOT_JSON || (rc == 0 && p.next != values.n))
			rc = TG_SPLICE_UNPAIRED;
		else if (rc != 0 || tg_splice_finish(&p.splice) != 0)
			rc = -1;
	}
	free(values.items);

	if (rc != 0)
		tg_json_writer_free(&p.splice.out);
	*out = p.splice.out;
	return rc;
}
