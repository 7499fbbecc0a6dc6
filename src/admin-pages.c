/*
 * Text error pages for the admin listener; see admin-pages.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <llhttp.h>

#include "admin-pages.h"

/* The heads of evhttp's error pages take under 200 bytes (libevent 2.1.12),
 * so a longer head is not one of them. */
#define PAGE_MAX_HEAD 1024

struct tg_admin_pages {
	struct bufferevent *bev;
	struct evbuffer_cb_entry *watch;
	struct event *rewrite;
};

/* The parts of a response head that the rewriter uses. */
struct page_head {
	int status;
	int major, minor;
	int headers_complete;
	int has_length;
	size_t head_size;
	size_t content_length;
	char reason[64];
	char date[64];
	char content_type[64];
	char *value;                    /* where on_header_value copies; NULL: nowhere */
	size_t value_size;
};

/* Copy at most size - 1 bytes of at into out, ending it with a NUL. */
static void
copy_text(char *out, size_t size, const char *at, size_t len)
{
	if (len >= size)
		len = size - 1;
	memcpy(out, at, len);
	out[len] = '\0';
}

static int
on_status(llhttp_t *parser, const char *at, size_t len)
{
	struct page_head *head = parser->data;

	copy_text(head->reason, sizeof(head->reason), at, len);
	return 0;
}

/* The head is contiguous, so llhttp passes each name and each value in one
 * call. */
static int
on_header_field(llhttp_t *parser, const char *at, size_t len)
{
	struct page_head *head = parser->data;

	head->value = NULL;
	if (len == strlen("Date") && strncasecmp(at, "Date", len) == 0) {
		head->value = head->date;
		head->value_size = sizeof(head->date);
	} else if (len == strlen("Content-Type") && strncasecmp(at, "Content-Type", len) == 0) {
		head->value = head->content_type;
		head->value_size = sizeof(head->content_type);
	}
	return 0;
}

static int
on_header_value(llhttp_t *parser, const char *at, size_t len)
{
	struct page_head *head = parser->data;

	if (head->value == NULL)
		return 0;
	copy_text(head->value, head->value_size, at, len);
	head->value = NULL;
	return 0;
}

/* Returns 1 so that llhttp skips the body, because the rewriter parses the
 * head only. */
static int
on_headers_complete(llhttp_t *parser)
{
	struct page_head *head = parser->data;

	head->headers_complete = 1;
	head->status = parser->status_code;
	head->major = parser->http_major;
	head->minor = parser->http_minor;
	head->has_length = (parser->flags & F_CONTENT_LENGTH) != 0;
	head->content_length = (size_t)parser->content_length;
	return 1;
}

static const llhttp_settings_t head_settings = {
	.on_status = on_status,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
};

/* Parse the response head at the start of out into head. Returns 0, or -1
 * when out starts with no complete head of at most PAGE_MAX_HEAD bytes
 * that llhttp accepts. */
static int
read_head(struct evbuffer *out, struct page_head *head)
{
	struct evbuffer_ptr end = evbuffer_search(out, "\r\n\r\n", 4, NULL);
	llhttp_t parser;
	const char *text;

	memset(head, 0, sizeof(*head));
	if (end.pos < 0 || (size_t)end.pos + 4 > PAGE_MAX_HEAD)
		return -1;
	head->head_size = (size_t)end.pos + 4;
	text = (const char *)evbuffer_pullup(out, (ev_ssize_t)head->head_size);
	if (text == NULL)
		return -1;

	llhttp_init(&parser, HTTP_RESPONSE, &head_settings);
	parser.data = head;
	if (llhttp_execute(&parser, text, head->head_size) != HPE_OK)
		return -1;
	return head->headers_complete ? 0 : -1;
}

/* Return 1 if head starts an HTML error page that makes up all of out. */
static int
is_evhttp_page(const struct page_head *head, struct evbuffer *out)
{
	static const char html[] = "text/html";

	return head->status >= 400 && head->has_length &&
	       strncasecmp(head->content_type, html, sizeof(html) - 1) == 0 &&
	       evbuffer_get_length(out) == head->head_size + head->content_length;
}

/* Write into body what was wrong with the request, from the status that
 * evhttp chose. */
static void
describe_rejection(char *body, size_t size, const struct page_head *head)
{
	switch (head->status) {
	case 400:
		snprintf(body, size, "invalid request: the request line or a header is not "
		         "valid HTTP/1.1, or the request head exceeds %d bytes", TG_ADMIN_MAX_HEAD);
		break;
	case 413:
		snprintf(body, size, "the request body exceeds %d bytes; the admin endpoints "
		         "take no body", TG_ADMIN_MAX_BODY);
		break;
	default:
		snprintf(body, size, "the admin listener rejected the request: %d %s",
		         head->status, head->reason);
		break;
	}
}

/* Empty out. Returns 0, or -1 when the drain failed. A socket
 * bufferevent freezes the front of its output buffer after its first
 * write and thaws it only to write (libevent 2.1.12), so a page that
 * follows a response on the same connection must thaw it to drain. */
static int
drain_all(struct evbuffer *out)
{
	int rc;

	if (evbuffer_drain(out, evbuffer_get_length(out)) == 0)
		return 0;
	evbuffer_unfreeze(out, 1);
	rc = evbuffer_drain(out, evbuffer_get_length(out));
	evbuffer_freeze(out, 1);
	return rc;
}

/* Replace all of out, evhttp's page, with a text page of the same status.
 * evhttp closes the connection after any of its pages. */
static void
write_text_page(struct evbuffer *out, const struct page_head *head)
{
	char body[256];

	describe_rejection(body, sizeof(body), head);
	if (drain_all(out) != 0)
		return;
	evbuffer_add_printf(out, "HTTP/%d.%d %d %s\r\n", head->major, head->minor,
	                    head->status, head->reason);
	if (head->date[0] != '\0')
		evbuffer_add_printf(out, "Date: %s\r\n", head->date);
	evbuffer_add_printf(out, "Content-Type: text/plain; charset=utf-8\r\n"
	                    "Content-Length: %zu\r\n"
	                    "Connection: close\r\n\r\n%s\n", strlen(body) + 1, body);
}

static void
rewrite_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tg_admin_pages *p = arg;
	struct evbuffer *out = bufferevent_get_output(p->bev);
	struct page_head head;

	(void)fd;
	(void)what;
	if (read_head(out, &head) != 0 || !is_evhttp_page(&head, out))
		return;

	/* Keep output_cb from scheduling a check of the text page. */
	evbuffer_cb_clear_flags(out, p->watch, EVBUFFER_CB_ENABLED);
	write_text_page(out, &head);
	evbuffer_cb_set_flags(out, p->watch, EVBUFFER_CB_ENABLED);
}

/* evhttp writes one response at a time, and the next only once the one
 * before has left the buffer, so a response starts where bytes land in an
 * empty buffer. */
static void
output_cb(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
	struct tg_admin_pages *p = arg;

	(void)out;
	if (info->orig_size == 0 && info->n_added > 0)
		event_active(p->rewrite, 0, 0);
}

struct tg_admin_pages *
tg_admin_pages_new(struct event_base *base, struct bufferevent *bev)
{
	struct tg_admin_pages *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->bev = bev;
	p->rewrite = event_new(base, -1, 0, rewrite_cb, p);
	if (p->rewrite != NULL)
		p->watch = evbuffer_add_cb(bufferevent_get_output(bev), output_cb, p);
	if (p->watch == NULL) {
		tg_admin_pages_free(p);
		return NULL;
	}
	return p;
}

void
tg_admin_pages_free(struct tg_admin_pages *p)
{
	if (p == NULL)
		return;
	if (p->watch != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_output(p->bev), p->watch);
	if (p->rewrite != NULL)
		event_free(p->rewrite);
	free(p);
}
