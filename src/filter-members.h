/*
 * The member tables of filter-text.c, which name the members of a body
 * that are texts, as a cursor for a reader of another shape: the stream
 * reader (filter-chunk.c) reads the content block of an Anthropic
 * content_block_start event, and the blocks of message_start, by the
 * rules that read the same blocks in a response body, so that a stream
 * screens what a body screens. A rule is a small number; 0 reads nothing.
 * Every call is a lookup in a static table, cheap enough for each key of
 * a stream event.
 */
#ifndef TOLLGATE_FILTER_MEMBERS_H
#define TOLLGATE_FILTER_MEMBERS_H

#include <stddef.h>

/* The kind of a string read by a rule, in a response. */
enum tg_member_string {
	TG_MEMBER_NONE,         /* not a text */
	TG_MEMBER_TEXT,         /* a text */
	TG_MEMBER_TYPED,        /* a text when its object's "type" is "text",
	                           not base64 (a document source's "data") */
	TG_MEMBER_TYPE,         /* that "type" */
};

/* The rule of an Anthropic content block of a response. */
unsigned tg_member_block(void);

/* The rule of the value of member key (len bytes) of an object read by
 * rule; 0 when the member is not read. */
unsigned tg_member_of(unsigned rule, const char *key, size_t len);

/* The rule of each item of an array read by rule; 0: none is read. */
unsigned tg_member_item(unsigned rule);

/* Return the kind of a string read by rule, in a response. */
enum tg_member_string tg_member_string(unsigned rule);

/* Whether rule reads every string inside an object or an array given to
 * it, at any depth. */
int tg_member_all(unsigned rule);

#endif
