/*
 * The mailbox: a FIFO of messages under a mutex, and an eventfd that wakes
 * the owner's event base. See mailbox.h for the contract.
 *
 * A poster writes to the eventfd only when its message made the queue
 * non-empty, and the owner reads the eventfd before it takes the queue. A
 * message is therefore either taken by a wake-up already due, or it finds
 * the queue empty and wakes the owner itself. The worst case is a wake-up
 * that finds the queue empty, when a poster's write comes after the owner
 * took its message.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "mailbox.h"

struct mail {
	struct mail *next;
	tg_mail_fn *deliver;
	tg_mail_fn *discard;
	void *arg;
};

struct tg_mailbox {
	pthread_mutex_t lock;           /* head and tail */
	struct mail *head;              /* oldest first */
	struct mail **tail;             /* the next pointer of the newest */
	int fd;                         /* eventfd: nonzero while a wake-up is due */
	struct event *wake;             /* on the owner's base: reads fd */
};

/* Take every queued message, oldest first, and leave the queue empty. */
static struct mail *
take_all(struct tg_mailbox *mb)
{
	struct mail *list;

	pthread_mutex_lock(&mb->lock);
	list = mb->head;
	mb->head = NULL;
	mb->tail = &mb->head;
	pthread_mutex_unlock(&mb->lock);
	return list;
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tg_mailbox *mb = arg;
	struct mail *m, *next;
	uint64_t count;

	(void)what;

	/* Reset the counter first: a post after this point either lands in
	 * the list taken below or writes to the eventfd again. EAGAIN, a
	 * counter already at zero, is harmless since the queue is taken
	 * anyway. */
	if (read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		tg_error("cannot read a mailbox eventfd: %s", strerror(errno));

	for (m = take_all(mb); m != NULL; m = next) {
		next = m->next;
		m->deliver(m->arg);
		free(m);
	}
}

struct tg_mailbox *
tg_mailbox_new(struct event_base *base)
{
	struct tg_mailbox *mb = calloc(1, sizeof(*mb));

	if (mb == NULL) {
		tg_error("cannot create a mailbox: out of memory");
		return NULL;
	}
	mb->tail = &mb->head;
	mb->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (mb->fd < 0) {
		tg_error("cannot create a mailbox eventfd: %s", strerror(errno));
		free(mb);
		return NULL;
	}
	mb->wake = event_new(base, mb->fd, EV_READ | EV_PERSIST, wake_cb, mb);
	if (mb->wake == NULL || event_add(mb->wake, NULL) != 0) {
		tg_error("cannot watch a mailbox eventfd: out of memory");
		if (mb->wake != NULL)
			event_free(mb->wake);
		close(mb->fd);
		free(mb);
		return NULL;
	}
	pthread_mutex_init(&mb->lock, NULL);
	return mb;
}

int
tg_mailbox_post(struct tg_mailbox *mb, tg_mail_fn *deliver, tg_mail_fn *discard, void *arg)
{
	struct mail *m = malloc(sizeof(*m));
	const uint64_t increment = 1;
	int was_empty;

	if (m == NULL)
		return -1;
	m->next = NULL;
	m->deliver = deliver;
	m->discard = discard;
	m->arg = arg;

	pthread_mutex_lock(&mb->lock);
	was_empty = mb->head == NULL;
	*mb->tail = m;
	mb->tail = &m->next;
	pthread_mutex_unlock(&mb->lock);

	/* The counter cannot reach its maximum, which is the only case in
	 * which a write to a non-blocking eventfd fails. */
	if (was_empty && write(mb->fd, &increment, sizeof(increment)) < 0)
		tg_error("cannot wake a thread through its mailbox eventfd: %s", strerror(errno));
	return 0;
}

void
tg_mailbox_free(struct tg_mailbox *mb)
{
	struct mail *m, *next;

	if (mb == NULL)
		return;
	for (m = take_all(mb); m != NULL; m = next) {
		next = m->next;
		if (m->discard != NULL)
			m->discard(m->arg);
		free(m);
	}
	event_free(mb->wake);
	close(mb->fd);
	pthread_mutex_destroy(&mb->lock);
	free(mb);
}
