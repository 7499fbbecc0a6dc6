/*
 * Behaviour options: the "key=value;key=value" lists that a request carries
 * in its x-mock header or after an '@' in its model name.
 */
#ifndef TOLLGATE_MOCK_OPTIONS_H
#define TOLLGATE_MOCK_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#define MOCK_SPLIT_MAX 64               /* offsets one split= may list */
#define MOCK_FIXTURE_NAME_MAX 128
#define MOCK_CONTENT_MAX 4096            /* bytes of content= text */
#define MOCK_CONTENT_PIECES 64          /* events one content= may give */

enum mock_usage { MOCK_USAGE_REQUEST, MOCK_USAGE_ON, MOCK_USAGE_OFF };

struct mock_options {
	char fixture[MOCK_FIXTURE_NAME_MAX];    /* "" when generating */
	int status;                             /* 0 when not set */
	char retry_after[64];                   /* "" when not set */
	uint64_t first_byte_delay_ms;
	uint64_t event_delay_ms;
	unsigned events;
	unsigned words;
	long size;                              /* -1 when not set */
	long close_after;                       /* -1 means never */
	long stall_after;                       /* -1 means never */
	long stream_error;                      /* -1 means never */
	int hangup;                             /* close without answering */
	size_t split[MOCK_SPLIT_MAX];           /* strictly increasing */
	size_t n_split;
	int crlf, cr, nospace;
	unsigned keepalive;
	enum mock_usage usage;
	int tools, unicode, reset_next;
	char content[MOCK_CONTENT_MAX];         /* content=, decoded */
	size_t content_cuts[MOCK_CONTENT_PIECES + 1]; /* piece starts, then the end */
	size_t n_content_pieces;                /* 0 when content= is not set */
	int stamp;                              /* send time in each JSON event */
};

/* Set every option to its default. */
void mock_options_init(struct mock_options *o);

/*
 * Parse one option list of len bytes into o, overwriting only the keys it
 * names, so a later list wins over an earlier one. Empty items are skipped.
 * Returns 0, or -1 with a message in err that begins with source, where the
 * list came from (such as "the x-mock header"), and names the key and what
 * is valid.
 */
int mock_options_parse(struct mock_options *o, const char *text, size_t len,
                       const char *source, char *err, size_t err_size);

/* Nonzero when an option changes how stream lines are written, so a
 * recorded stream must be re-framed instead of replayed as is. */
int mock_options_reframe(const struct mock_options *o);

#endif
