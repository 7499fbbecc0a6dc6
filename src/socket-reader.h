/*
 * Reading a bufferevent's plain TCP socket with one system call per read.
 *
 * libevent 2.1's socket bufferevent reads through evbuffer_read(), which
 * calls ioctl(FIONREAD) for the count of waiting bytes before every
 * readv(). Under strace, a worker proxying bench/post.lua requests made 2
 * ioctl() and 2 readv() calls per request. A reader takes over the reading
 * of one bufferevent: its own read event calls recv() once, appends the
 * bytes to the bufferevent's input buffer, and hands the outcome to the
 * callbacks set with bufferevent_setcb(), as libevent would:
 *
 *   bytes     appended to the input, then the read callback
 *   EOF       reading stops, then the event callback with
 *             BEV_EVENT_READING | BEV_EVENT_EOF
 *   an error  reading stops, then the event callback with
 *             BEV_EVENT_READING | BEV_EVENT_ERROR and errno set
 *             (ENOMEM when the input buffer cannot grow)
 *
 * The bufferevent keeps the rest: writing, connecting, the write timeout
 * and its watermark. Its own reading must stay disabled: the owner enables
 * and disables reading through the reader only. Read watermarks, a read
 * timeout and rate limits of the bufferevent do not apply to a reader;
 * tollgate sets none.
 *
 * A TLS bufferevent reads through OpenSSL, so its reader is only a pass-
 * through to bufferevent_enable() and bufferevent_disable(). That lets the
 * owner treat both kinds alike.
 *
 * Thread: a reader belongs to the thread that runs its bufferevent's base.
 */
#ifndef TOLLGATE_SOCKET_READER_H
#define TOLLGATE_SOCKET_READER_H

struct bufferevent;
struct event;

/*
 * The reader of one bufferevent, kept inside the connection that owns it.
 * The fields are private to socket-reader.c.
 */
struct tg_socket_reader {
	struct bufferevent *bev;
	struct event *event;    /* read event on the socket; NULL until the
	                           socket exists, and for a pass-through */
	int direct;             /* 1: recv() here; 0: the bufferevent reads */
	int enabled;            /* reading requested, for a direct reader */
};

/*
 * Set r up to read bev, with reading disabled. direct is 1 for a plain
 * socket bufferevent, which r then reads itself, and 0 for a TLS one. bev
 * may still be without a socket (a connection not yet opened): see
 * tg_socket_reader_connected(). Cannot fail.
 */
void tg_socket_reader_init(struct tg_socket_reader *r, struct bufferevent *bev,
                           int direct);

/*
 * Start reading: the callbacks run as data, EOF or an error arrive. A
 * direct reader enabled while its bufferevent has no socket starts once
 * tg_socket_reader_connected() is called. A direct reader that has no
 * memory for its event falls back to the bufferevent's own reading, which
 * works and costs the ioctl again. Enabling an enabled reader does nothing.
 */
void tg_socket_reader_enable(struct tg_socket_reader *r);

/* Stop reading; bytes already in the input buffer stay there. The
 * callbacks may call this, and tg_socket_reader_enable(), on their own
 * reader. */
void tg_socket_reader_disable(struct tg_socket_reader *r);

/*
 * Tell r that its bufferevent's socket has connected (BEV_EVENT_CONNECTED),
 * so that a direct reader that was enabled before the socket existed
 * starts reading it. Does nothing for a pass-through reader.
 */
void tg_socket_reader_connected(struct tg_socket_reader *r);

/*
 * Stop r and free its event. Call it before bufferevent_free(), which
 * closes the socket. A callback may release its own reader, and init it
 * again for a new bufferevent, as long as it then returns.
 */
void tg_socket_reader_release(struct tg_socket_reader *r);

#endif
