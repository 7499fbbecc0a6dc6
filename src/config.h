/*
 * Loading, validating and sharing configuration snapshots.
 */
#ifndef TOLLGATE_CONFIG_H
#define TOLLGATE_CONFIG_H

#include <stdio.h>

#include "config-t.h"

/*
 * Load and validate the JSON file at path. Every problem found is written to
 * err as one line "FILE:LINE:COLUMN: message" or "FILE: path.to.key:
 * message", and all of them are reported in one pass. Secrets (expanded
 * ${VARS}, api keys) never appear in those lines.
 *
 * Returns a snapshot with one reference, or NULL when any error was found.
 */
struct tg_config *tg_config_load(const char *path, FILE *err);

/* For tollgate -t: tg_config_load(), plus the checks of files that only
 * startup opens (the access log), reported in the same pass. */
struct tg_config *tg_config_check(const char *path, FILE *err);

struct tg_config *tg_config_ref(struct tg_config *cfg);
void tg_config_unref(struct tg_config *cfg);

/* Find a backend by name, or NULL. */
const struct tg_backend *tg_config_backend(const struct tg_config *cfg,
                                           const char *name);

/* Print one line per setting, tab-separated: key path (with "[]" for an
 * array element and ".NAME" for a named backend), type, default as JSON
 * text or "(required)", "(computed)", "(none)", and one line of help. */
void tg_config_print_settings(FILE *out);

/* Parse "250ms", "2s", "5m", "1h" (an integer and a unit, no sign) into
 * milliseconds. Returns 0, -1 when s is not of that form, or -2 when it is
 * but the value does not fit tg_msec_t. */
int tg_parse_duration(const char *s, tg_msec_t *out);

/* Write ms into buf as the config would give it, with the largest unit
 * that divides it exactly: "10s", "1500ms", "2h". Returns buf. */
const char *tg_format_duration(tg_msec_t ms, char *buf, size_t size);

/* Parse "512", "64KiB", "32MiB", "1GiB" (also "B", "KB"/"MB"/"GB" as powers
 * of 1000) into bytes. Returns 0, -1 when s is not of that form, or -2 when
 * it is but the value does not fit size_t. */
int tg_parse_size(const char *s, size_t *out);

#endif
