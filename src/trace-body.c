/*
 * Export bodies, counted by their holders.
 */
#include <stdlib.h>

#include <event2/buffer.h>

#include "trace-body.h"

struct tg_export_body *
tg_export_body_new(void)
{
	struct tg_export_body *body = calloc(1, sizeof(*body));

	if (body != NULL)
		body->holders = 1;
	return body;
}

void
tg_export_body_release(struct tg_export_body *body)
{
	if (body == NULL || --body->holders > 0)
		return;
	tg_json_writer_free(&body->text);
	free(body);
}

int
tg_export_body_lent(const struct tg_export_body *body)
{
	return body->holders > 1;
}

/* libevent is done with the bytes of a buffer's reference. */
static void
returned_cb(const void *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	tg_export_body_release(arg);
}

int
tg_export_body_lend(struct tg_export_body *body, struct evbuffer *out)
{
	if (evbuffer_add_reference(out, body->text.data + body->start,
	                           body->text.len - body->start, returned_cb, body) != 0)
		return -1;
	body->holders++;
	return 0;
}
