/*
 * Reading plain sockets without the ioctl(FIONREAD) of libevent's
 * bufferevent; see socket-reader.h.
 */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "socket-reader.h"

/*
 * The maximum bytes one read takes. They go to a buffer on the stack and
 * from there to the input, where libevent sizes the new chain to the bytes
 * read, as its own reads sized chains by FIONREAD. Reading into space
 * reserved in the input would save that copy but costs more than it
 * saves. The input of a connection is usually empty between reads, so
 * each read would allocate a chain of READ_SIZE or more, which glibc
 * serves from its large bins rather than its per-thread cache. Under
 * callgrind with bench/post.lua, evbuffer_reserve_space() took 700 to 800
 * instructions per read against 300 for evbuffer_add(). A request or
 * reply of a few KiB takes one read either way. libevent's reads stop at
 * 4096 bytes, and 16 KiB takes a long prompt or an inline image in a
 * quarter of the reads and of the turns of the event loop. Being on the
 * stack, the buffer costs no memory per connection.
 */
#define READ_SIZE (16 * 1024)

/* Append n bytes to the input buffer of bev. Returns 0, or -1 when out of
 * memory. */
static int
append_input(struct bufferevent *bev, const char *bytes, size_t n)
{
	struct evbuffer *input = bufferevent_get_input(bev);
	int rc;

	/* The socket bufferevent freezes the end of its input except while
	 * it reads itself, so that nothing else appends to it. */
	evbuffer_unfreeze(input, 0);
	rc = evbuffer_add(input, bytes, n);
	evbuffer_freeze(input, 0);
	return rc;
}

/* Read once from the socket, which is non-blocking like every socket of a
 * bufferevent, and report the outcome to the bufferevent's callbacks. A
 * callback may free the connection, the reader with it, so nothing
 * touches r after the callback is called. */
static void
on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct tg_socket_reader *r = arg;
	struct bufferevent *bev = r->bev;
	bufferevent_data_cb read_cb;
	bufferevent_event_cb event_cb;
	void *cb_arg;
	char bytes[READ_SIZE];
	ssize_t n;
	int err;

	(void)what;
	n = recv(fd, bytes, sizeof(bytes), 0);
	err = errno;
	if (n > 0 && append_input(bev, bytes, (size_t)n) != 0) {
		n = -1;
		err = ENOMEM;
	}
	if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK || err == EINTR))
		return;

	/* As in libevent, reading stops at the end of the stream or an error,
	 * before the event callback runs, and a later enable reads again. */
	if (n <= 0)
		tg_socket_reader_disable(r);

	bufferevent_getcb(bev, &read_cb, NULL, &event_cb, &cb_arg);
	if (n > 0) {
		if (read_cb != NULL)
			read_cb(bev, cb_arg);
		return;
	}
	if (event_cb != NULL) {
		errno = n == 0 ? 0 : err;
		event_cb(bev, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR),
		         cb_arg);
	}
}

void
tg_socket_reader_init(struct tg_socket_reader *r, struct bufferevent *bev, int direct)
{
	r->bev = bev;
	r->event = NULL;
	r->direct = direct;
	r->enabled = 0;
}

/* Add the read event of an enabled direct reader whose bufferevent has a
 * socket, creating the event on first use. */
static void
start_reading(struct tg_socket_reader *r)
{
	evutil_socket_t fd = bufferevent_getfd(r->bev);

	/* Both reading the socket would split its bytes between them. */
	assert(!(bufferevent_get_enabled(r->bev) & EV_READ));

	if (r->event == NULL) {
		if (fd < 0)
			return;
		r->event = event_new(bufferevent_get_base(r->bev), fd, EV_READ | EV_PERSIST,
		                     on_readable, r);
		if (r->event == NULL) {
			r->direct = 0;
			r->enabled = 0;
			bufferevent_enable(r->bev, EV_READ);
			return;
		}
	}
	event_add(r->event, NULL);
}

void
tg_socket_reader_enable(struct tg_socket_reader *r)
{
	if (!r->direct) {
		bufferevent_enable(r->bev, EV_READ);
		return;
	}
	if (r->enabled)
		return;
	r->enabled = 1;
	start_reading(r);
}

void
tg_socket_reader_disable(struct tg_socket_reader *r)
{
	if (!r->direct) {
		bufferevent_disable(r->bev, EV_READ);
		return;
	}
	r->enabled = 0;
	if (r->event != NULL)
		event_del(r->event);
}

void
tg_socket_reader_connected(struct tg_socket_reader *r)
{
	if (r->direct && r->enabled)
		start_reading(r);
}

void
tg_socket_reader_release(struct tg_socket_reader *r)
{
	if (r->event != NULL)
		event_free(r->event);
	r->event = NULL;
	r->enabled = 0;
}
