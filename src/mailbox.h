/*
 * A mailbox: how other threads hand work to the thread that runs an event
 * base created with EVENT_BASE_FLAG_NOLOCK.
 *
 * libevent takes no lock on such a base, so no other thread may call
 * anything on it: not event_base_once(), not event_active(), not
 * event_base_loopexit(). A poster instead appends a message to the
 * mailbox's queue, under the mailbox's own mutex, and wakes the owner
 * through an eventfd that the base watches. The owner's thread then runs
 * each message's deliver function, once, in the order the messages were
 * posted. The mutex is taken once per post and once per wake-up, both
 * rare (reload, drain, stop), whereas a locked base takes its lock around
 * every event.
 */
#ifndef TOLLGATE_MAILBOX_H
#define TOLLGATE_MAILBOX_H

struct event_base;
struct tg_mailbox;

typedef void tg_mail_fn(void *arg);

/* Create a mailbox whose messages are delivered on base's thread. Call it
 * on that thread, or before that thread starts. Returns NULL, after
 * logging why, when out of memory or descriptors. */
struct tg_mailbox *tg_mailbox_new(struct event_base *base);

/*
 * Any thread: queue a message. deliver(arg) runs later on the base's
 * thread, after every message posted before this one. A deliver function
 * may post to the same mailbox. If the mailbox is freed first, discard(arg)
 * runs instead, on the freeing thread, so that arg can release what it
 * holds; discard may be NULL. Returns 0, or -1 when out of memory, in which
 * case neither function runs.
 */
int tg_mailbox_post(struct tg_mailbox *mb, tg_mail_fn *deliver, tg_mail_fn *discard,
                    void *arg);

/* Discard the undelivered messages and free mb, before its base is freed.
 * Call it on the base's thread, or after that thread ended, once no
 * thread posts any more. mb may be NULL. */
void tg_mailbox_free(struct tg_mailbox *mb);

#endif
