/*
 * The table-driven machinery of the configuration loader, shared by
 * config.c (tollgate's own sections) and the feature modules that declare
 * sections of their own. Only the loader's files include this header.
 *
 * Adding a section, "cache" at the top level for example:
 *
 * 1. Define the struct that config-t.h names (struct tg_cache_config) in
 *    the feature's own types header, cache-t.h.
 * 2. In cache-config.c, declare one struct setting per key (type, offset
 *    into the struct, default, bounds, one line of help) and wrap the table
 *    with SECTION(). Write a parse_fn in three steps: parse_object()
 *    allocates the struct and fills it from the table, then the function
 *    checks what the table cannot express (one key against another), then
 *    it stores the pointer with *FIELD(base, s, struct tg_cache_config *).
 *    Store it even after errors, because a failed load frees the snapshot
 *    whole. Then define the feature:
 *        const struct feature tg_cache_feature = {
 *            .parse = parse_cache, .free = free_cache,
 *            .section = &cache_section, .doc_type = "object",
 *        };
 * 3. Declare tg_cache_feature in the feature's header, include that header
 *    in config.c and add one entry to the table the key belongs to
 *    (top_settings for KEY, route_settings for routes[].KEY,
 *    backend_settings for backends.NAME.KEY):
 *        { .key = "cache", .type = T_FEATURE, .feature = &tg_cache_feature,
 *          .offset = offsetof(struct tg_config, cache), .help = "..." },
 * 4. Document every key in man/tollgate.json.5 (".B cache.ttl"). The unit
 *    test man_page_lists_every_setting fails on a key it does not find.
 *
 * Errors: call report(ctx, path, ...) with the key path the parse_fn was
 * given, and build the paths of children with path_key() and path_index().
 * A message says what is wrong with which value and what is valid. Quote
 * values with quote() as written (the raw text from get_string()), never
 * expanded and never a secret. After reporting, leave the field at zero and
 * go on with the next value, so that one run lists every error.
 *
 * Defaults: a key absent from the file takes the .def of its entry, JSON
 * text that goes through the same parser as the file. An absent feature key
 * leaves its pointer NULL, unless the entry sets .def = "{}" to build the
 * struct from the table's defaults. Set it when the code that reads the
 * config should always find a struct.
 *
 * Freeing: the feature's free runs once for each non-NULL pointer when the
 * snapshot is freed, also after a failed load, so it must cope with any
 * field left zero. Features are freed before the rest of the snapshot
 * (routes' first, then backends', then the top level's). Pointers into
 * backends or routes stay valid in free, but another feature's struct may
 * be gone already.
 *
 * Cross-references: entries are parsed in table order, so a key may look up
 * what an earlier key built (routes find backends). A rule that needs the
 * whole config, such as a route naming a filter that must exist, is a
 * check_fn added to the checks[] list in config.c.
 */
#ifndef TOLLGATE_CONFIG_PARSE_H
#define TOLLGATE_CONFIG_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "config-t.h"

#define PATH_LEN 256    /* key path such as "backends.primary.pool.max_idle" */
#define QUOTE_LEN 100   /* a value quoted in a message; longer ones are cut */
#define NAME_MAX_LEN 64 /* backend and route names */

/* A key that an environment variable filled because the file left it out,
 * such as tracing.batch.schedule_delay from OTEL_BSP_SCHEDULE_DELAY. */
struct env_origin {
	char path[PATH_LEN];    /* key path of the value */
	const char *name;       /* the variable */
	const char *value;      /* its value, or NULL when it may be a secret */
};

struct load_ctx {
	const char *file;
	FILE *err;
	unsigned n_errors;
	struct tg_config *cfg;  /* being built; routes look up its backends */

	/* Keys filled from the environment while a section that reads it is
	 * parsed: report() names the variable of a key at or under one. */
	const struct env_origin *origins;
	size_t n_origins;
};

enum setting_type {
	T_STRING,       /* char *, non-empty */
	T_NAME,         /* char *, letters, digits, '_', '-', '.' */
	T_FILE,         /* char *, a regular file readable at load time */
	T_ADDRESS,      /* char *, "host:port" or "[v6addr]:port" */
	T_BOOL,         /* int, 0 or 1 */
	T_INT,          /* int within [min, max] */
	T_COUNT,        /* size_t within [min, max] */
	T_DURATION,     /* tg_msec_t within [min, max] milliseconds */
	T_SIZE,         /* size_t within [min, max] bytes */
	T_SECTION,      /* object whose settings write into base + offset */
	T_CUSTOM,       /* parsed by setting.parse */
	T_FEATURE,      /* pointer to a struct that setting.feature owns */
};

struct setting;

/* Parse value, found at key path, into the struct at base. Report problems
 * through ctx and leave the field as it was. */
typedef void parse_fn(struct load_ctx *ctx, const char *path, json_t *value,
                      void *base, const struct setting *s);

/* A rule that involves several sections. It runs once the whole file is
 * parsed, even after errors, so it must cope with fields left zero. It
 * reports with the key path of the value at fault, and may resolve names
 * into pointers in cfg as parse_fns do. */
typedef void check_fn(struct load_ctx *ctx, struct tg_config *cfg);

struct section {
	const struct setting *settings;
	size_t n;
};

/*
 * A section owned by a feature module. parse allocates the feature's
 * struct, fills it and stores the pointer at the setting's offset, and free
 * releases it with the snapshot. section and element serve only the
 * settings printer, because the table is private to the feature's file.
 */
struct feature {
	parse_fn *parse;
	void (*free)(void *obj);        /* obj: what parse stored, non-NULL */
	const struct section *section;  /* keys of the object; NULL: none */
	const char *element;            /* as in struct setting */
	const char *doc_type;           /* "object", "array", ...: for docs */
};

struct setting {
	const char *key;
	enum setting_type type;
	size_t offset;                  /* of the field in the base struct */
	const char *def;                /* default as JSON text; NULL: none */
	json_t *(*def_fn)(void);        /* computed default, documented in help */
	bool required;
	uint64_t min, max;              /* bounds of numbers, durations, sizes */
	const struct section *section;  /* T_SECTION, or the element of a list */
	const char *element;            /* "[]" or ".NAME": how docs name one */
	parse_fn *parse;                /* T_CUSTOM */
	const char *doc_type;           /* T_CUSTOM type, for docs */
	const struct feature *feature;  /* T_FEATURE */
	const char *help;
};

#define FIELD(base, s, type) ((type *)(void *)((char *)(base) + (s)->offset))

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SECTION(table) { (table), ARRAY_LEN(table) }
#define NO_MAX UINT64_MAX

/* The maximum of every duration setting, whatever its own max: 8760h (a
 * year). Timers turn a duration into nanoseconds or microseconds and add it
 * to a clock reading in 64 bits. That wraps for values near 2^63 us, and a
 * wrapped timeout fires at once instead of late. */
#define DURATION_MAX ((uint64_t)8760 * 60 * 60 * 1000)

/* The "tls" object of an https client, backends.NAME.tls and
 * tracing.otlp.tls: its settings fill a struct tg_tls_client_config, which
 * the T_SECTION entry locates with its offset. */
extern const struct section tg_tls_client_section;

/* --- messages ----------------------------------------------------------- */

/* Print one error line, "FILE: PATH: message", or "FILE: message" when path
 * is "", and count it, which makes the load fail. When an environment
 * variable filled the key at path, the line begins "FILE: NAME=VALUE
 * (PATH): " instead, and without "=VALUE" for a value that may be secret. */
void report(struct load_ctx *ctx, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Print one warning line as report() prints an error, with "warning: "
 * before the message, without making the load fail. */
void report_warning(struct load_ctx *ctx, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

void report_oom(struct load_ctx *ctx, const char *path);

/* Report "expected EXPECTED, got a string" and the like. */
void report_type(struct load_ctx *ctx, const char *path,
                 const char *expected, const json_t *value);

/* Write s into buf (at least 16 bytes; QUOTE_LEN is the usual size) as a
 * double-quoted string that stays on one line, cut with "..." when long.
 * Returns buf. */
const char *quote(const char *s, char *buf, size_t size);

/* --- key paths: out has PATH_LEN bytes; both return out ------------------ */

/* "parent.key", or "key" at the top level. */
const char *path_key(char *out, const char *parent, const char *key);

/* "parent[i]". */
const char *path_index(char *out, const char *parent, size_t i);

/* --- values ------------------------------------------------------------- */

/* Check that value is a JSON string and return its copy with ${VARS}
 * expanded, to free; or NULL after reporting, with expected naming what
 * was wanted. *raw, when given, receives the text as written, for messages. */
char *get_string(struct load_ctx *ctx, const char *path,
                 const json_t *value, const char *expected,
                 const char **raw);

/* A word that a string setting may take, and the value it stands for. */
struct keyword {
	const char *name;
	int value;
};

/* Look value up among the n words and store its value in *out. Returns 0,
 * or -1 after reporting that value is not a string or not one of the
 * words, with the list of valid ones. */
int parse_keyword(struct load_ctx *ctx, const char *path, const json_t *value,
                  const struct keyword *words, size_t n, int *out);

/* parse_keyword() for words that compare in any case, such as header
 * names (RFC 9110 section 5.1). */
int parse_keyword_any_case(struct load_ctx *ctx, const char *path, const json_t *value,
                           const struct keyword *words, size_t n, int *out);

/* Split "host:port" or "[v6addr]:port"; host and port, when not NULL,
 * receive copies to free. Returns NULL, or why the address is invalid. */
const char *split_address(const char *addr, char **host, char **port);

/* True when url, which libevent parsed, writes a ":" with no port after
 * its host ("http://host:/v1"): libevent reads that as no port at all, so
 * the default port would be used without a word. */
bool url_has_empty_port(const char *url);

/* True for 1 to NAME_MAX_LEN letters, digits, '_', '-' or '.'. */
bool is_valid_name(const char *s);

/* Check that name, at path, is not placeholder, the value that the
 * metrics give label for meaning (requests that matched no route, say),
 * since the series of both would merge. Returns true, or false after
 * reporting. */
bool check_unreserved_name(struct load_ctx *ctx, const char *path, const char *name,
                           const char *label, const char *placeholder, const char *meaning);

/* Levenshtein distance between a and b, for "did you mean" suggestions;
 * limit + 1 when it is larger or a string is longer than NAME_MAX_LEN. */
size_t edit_distance(const char *a, const char *b, size_t limit);

/* Report that no backend is called raw, suggesting a close name. */
void report_unknown_backend(struct load_ctx *ctx, const char *path, const char *raw);

/* --- values sent in HTTP headers ----------------------------------------- */

/* True when name is an RFC 9110 token, the only form a header name takes:
 * letters, digits and !#$%&'*+-.^_`|~. */
bool is_header_name(const char *name);

/*
 * Check that value, the expansion of raw, may be sent as a header value:
 * no control byte but HTAB, so that no CR or LF can end the line early and
 * add headers of its own. Returns true, or false after reporting the first
 * such byte and its position, never the value, which may be a secret. A
 * value whose only fault is a final line break, as a secret file written
 * by an editor or "echo" has, gets a message that says so; it is not
 * stripped, because a key is sent exactly as configured.
 */
bool check_header_value(struct load_ctx *ctx, const char *path, const char *raw,
                        const char *value);

/* The change to a header value when HTTP strips the spaces and tabs
 * around it (RFC 9110 section 5.5): none, at its edges, or to empty. */
enum tg_ows_strip {
	TG_OWS_KEPT,
	TG_OWS_EDGES,
	TG_OWS_EMPTY,
};

/* Return what stripping the spaces and tabs around value would do. */
enum tg_ows_strip header_ows_strip(const char *value);

/* --- sections ----------------------------------------------------------- */

/* Parse value, found at key path, into base as s declares. */
void parse_value(struct load_ctx *ctx, const char *path, json_t *value,
                 void *base, const struct setting *s);

/*
 * Parse the JSON object obj, found at key path, into the struct at base
 * following the table sec. Unknown keys are reported first, in file order.
 * Then each setting is parsed or defaulted in table order, so a setting can
 * rely on those declared before it: routes look up backends.
 */
void parse_section(struct load_ctx *ctx, const char *path,
                   json_t *obj, void *base, const struct section *sec);

/*
 * The usual body of a feature's parse_fn: check that value is an object,
 * allocate size zeroed bytes and fill them from sec. Returns the struct,
 * even when some of its settings had errors, or NULL after reporting that
 * value is not an object or that memory ran out.
 */
void *parse_object(struct load_ctx *ctx, const char *path, json_t *value,
                   size_t size, const struct section *sec);

/* Free every T_FEATURE pointer that sec declares in base, T_SECTION entries
 * included, and set it to NULL. */
void free_features(void *base, const struct section *sec);

/* Print the settings of sec, their key paths under prefix, in the format of
 * tg_config_print_settings(). */
void print_section(FILE *out, const char *prefix, const struct section *sec);

#endif
