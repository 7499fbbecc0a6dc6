/*
 * Loading go-vcr cassettes with libyaml's document API.
 *
 * A cassette is a mapping whose "interactions" sequence holds request and
 * response pairs; the mock replays the first response: its "code", its
 * recorded Content-Type header (a sequence of values) and its "body", whose
 * bytes are what the YAML scalar decodes to. The first request's "body" is
 * kept too, for the unit tests that read recorded requests.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "fixture.h"
#include "options.h"

struct fixture_cache {
	char name[MOCK_FIXTURE_NAME_MAX];
	struct fixture fixture;
	struct fixture_cache *next;
};

/* Return the value node of key in a mapping node, or NULL. Keys compare
 * case-insensitively when nocase is set (HTTP header names). */
static yaml_node_t *
map_get(yaml_document_t *doc, yaml_node_t *map, const char *key, int nocase)
{
	yaml_node_pair_t *pair;
	size_t key_len = strlen(key);

	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;

	for (pair = map->data.mapping.pairs.start;
	     pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yaml_document_get_node(doc, pair->key);

		if (k == NULL || k->type != YAML_SCALAR_NODE
		    || k->data.scalar.length != key_len)
			continue;
		if (nocase ? strncasecmp((char *)k->data.scalar.value, key, key_len) == 0
		           : memcmp(k->data.scalar.value, key, key_len) == 0)
			return yaml_document_get_node(doc, pair->value);
	}
	return NULL;
}

static yaml_node_t *
seq_first(yaml_document_t *doc, yaml_node_t *seq)
{
	if (seq == NULL || seq->type != YAML_SEQUENCE_NODE
	    || seq->data.sequence.items.start == seq->data.sequence.items.top)
		return NULL;
	return yaml_document_get_node(doc, *seq->data.sequence.items.start);
}

static int
is_scalar(const yaml_node_t *node)
{
	return node != NULL && node->type == YAML_SCALAR_NODE;
}

/* Copy the bytes of scalar, or none when it is not one, into a new
 * NUL-terminated string at *out. Returns -1 when out of memory. */
static int
copy_scalar(const yaml_node_t *scalar, char **out, size_t *len)
{
	*len = is_scalar(scalar) ? scalar->data.scalar.length : 0;
	*out = malloc(*len + 1);
	if (*out == NULL)
		return -1;
	if (*len > 0)
		memcpy(*out, scalar->data.scalar.value, *len);
	(*out)[*len] = '\0';
	return 0;
}

/* Fill f from the cassette document; returns -1 with err set. */
static int
extract_response(yaml_document_t *doc, struct fixture *f,
                 char *err, size_t err_size)
{
	yaml_node_t *root = yaml_document_get_root_node(doc);
	yaml_node_t *first, *resp, *body, *code, *type;
	char *end;

	first = seq_first(doc, map_get(doc, root, "interactions", 0));
	resp = map_get(doc, first, "response", 0);
	body = map_get(doc, resp, "body", 0);
	code = map_get(doc, resp, "code", 0);
	if (!is_scalar(body) || !is_scalar(code)) {
		snprintf(err, err_size,
		         "has no interactions[0].response with a body and a code");
		return -1;
	}

	f->code = (int)strtol((char *)code->data.scalar.value, &end, 10);
	if (*end != '\0' || f->code < 100 || f->code > 599) {
		snprintf(err, err_size, "has an invalid response code \"%s\"",
		         (char *)code->data.scalar.value);
		return -1;
	}

	type = seq_first(doc, map_get(doc, map_get(doc, resp, "headers", 0),
	                              "Content-Type", 1));
	f->content_type = strdup(is_scalar(type) ? (char *)type->data.scalar.value
	                                         : "application/json");
	if (f->content_type == NULL || copy_scalar(body, &f->body, &f->body_len) != 0 ||
	    copy_scalar(map_get(doc, map_get(doc, first, "request", 0), "body", 0),
	                &f->request_body, &f->request_body_len) != 0) {
		snprintf(err, err_size, "could not be loaded: out of memory");
		return -1;
	}
	return 0;
}

/* Load path into f; returns -1 with err set. */
static int
load_fixture(const char *path, struct fixture *f, char *err, size_t err_size)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	FILE *fp = fopen(path, "rb");
	char reason[256];
	int rc = -1;

	if (fp == NULL) {
		snprintf(err, err_size, "fixture file %s could not be opened: %s",
		         path, strerror(errno));
		return -1;
	}

	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, fp);
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(err, err_size, "fixture file %s:%zu:%zu: invalid YAML: %s",
		         path, parser.problem_mark.line + 1,
		         parser.problem_mark.column + 1,
		         parser.problem ? parser.problem : "unknown error");
		goto out;
	}

	rc = extract_response(&doc, f, reason, sizeof(reason));
	if (rc < 0) {
		snprintf(err, err_size, "fixture file %s %s", path, reason);
		free(f->content_type);
		free(f->body);
		free(f->request_body);
		memset(f, 0, sizeof(*f));
	}
	yaml_document_delete(&doc);

out:
	yaml_parser_delete(&parser);
	fclose(fp);
	return rc;
}

const struct fixture *
fixture_get(struct fixture_cache **cache, const char *dir, const char *name,
            char *err, size_t err_size)
{
	struct fixture_cache *entry;
	char path[4096];

	for (entry = *cache; entry != NULL; entry = entry->next)
		if (strcmp(entry->name, name) == 0)
			return &entry->fixture;

	if (strlen(name) >= sizeof(entry->name)
	    || (size_t)snprintf(path, sizeof(path), "%s/%s.yaml", dir, name)
	       >= sizeof(path)) {
		snprintf(err, err_size, "fixture name %s is too long", name);
		return NULL;
	}

	entry = calloc(1, sizeof(*entry));
	if (entry == NULL) {
		snprintf(err, err_size, "out of memory loading fixture %s", name);
		return NULL;
	}
	if (load_fixture(path, &entry->fixture, err, err_size) < 0) {
		free(entry);
		return NULL;
	}

	strcpy(entry->name, name);
	entry->next = *cache;
	*cache = entry;
	return &entry->fixture;
}

int
fixture_is_stream(const struct fixture *f)
{
	return strncasecmp(f->content_type, "text/event-stream", 17) == 0;
}

void
fixture_cache_free(struct fixture_cache *cache)
{
	while (cache != NULL) {
		struct fixture_cache *next = cache->next;

		free(cache->fixture.content_type);
		free(cache->fixture.body);
		free(cache->fixture.request_body);
		free(cache);
		cache = next;
	}
}
