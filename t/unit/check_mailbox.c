/*
 * Unit tests for the mailbox: messages posted from other threads reach the
 * thread of a lock-free event base once each, in the order of each poster.
 */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "mailbox.h"

#define MESSAGES 20000          /* per producer */
#define PRODUCERS 4

/* The owner's side: a base as the workers make it, and what arrived. */
struct owner {
	struct event_base *base;
	struct tg_mailbox *mailbox;
	uint32_t *received;             /* values of the messages, as delivered */
	size_t n_received;
	size_t expected;                /* leave the loop after this many */
	size_t discarded;
};

/* One message: the owner it goes to, and the number to record. */
struct letter {
	struct owner *owner;
	uint32_t value;
};

static void
owner_init(struct owner *o, size_t expected)
{
	struct event_config *cfg = event_config_new();

	ck_assert_ptr_nonnull(cfg);
	event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
	o->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	ck_assert_ptr_nonnull(o->base);
	o->mailbox = tg_mailbox_new(o->base);
	ck_assert_ptr_nonnull(o->mailbox);
	o->received = calloc(expected > 0 ? expected : 1, sizeof(*o->received));
	ck_assert_ptr_nonnull(o->received);
	o->n_received = 0;
	o->expected = expected;
	o->discarded = 0;
}

static void
owner_free(struct owner *o)
{
	tg_mailbox_free(o->mailbox);
	event_base_free(o->base);
	free(o->received);
}

/* Record the value; on the owner's thread only, as it touches the base. */
static void
record(void *arg)
{
	struct letter *l = arg;
	struct owner *o = l->owner;

	ck_assert_uint_lt(o->n_received, o->expected);
	o->received[o->n_received++] = l->value;
	free(l);
	if (o->n_received == o->expected)
		event_base_loopexit(o->base, NULL);
}

static void
count_discard(void *arg)
{
	struct letter *l = arg;

	l->owner->discarded++;
	free(l);
}

static void
post_value(struct owner *o, uint32_t value)
{
	struct letter *l = malloc(sizeof(*l));

	ck_assert_ptr_nonnull(l);
	l->owner = o;
	l->value = value;
	ck_assert_int_eq(tg_mailbox_post(o->mailbox, record, count_discard, l), 0);
}

struct producer {
	pthread_t thread;
	struct owner *owner;
	uint32_t id;
};

/* Post MESSAGES values, the producer's id in the top byte and the sequence
 * number below it. A yield now and then lets the owner take the queue
 * while it is being filled. */
static void *
produce(void *arg)
{
	struct producer *p = arg;

	for (uint32_t seq = 0; seq < MESSAGES; seq++) {
		post_value(p->owner, p->id << 24 | seq);
		if (seq % 64 == 0)
			sched_yield();
	}
	return NULL;
}

static void
run_producers(struct owner *o, struct producer *producers, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		producers[i].owner = o;
		producers[i].id = (uint32_t)i;
		ck_assert_int_eq(pthread_create(&producers[i].thread, NULL, produce,
		                                &producers[i]), 0);
	}
	ck_assert_int_eq(event_base_dispatch(o->base), 0);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(pthread_join(producers[i].thread, NULL), 0);
}

START_TEST(one_producer_in_order)
{
	struct owner o;
	struct producer producer;

	owner_init(&o, MESSAGES);
	run_producers(&o, &producer, 1);

	ck_assert_uint_eq(o.n_received, MESSAGES);
	for (uint32_t i = 0; i < MESSAGES; i++)
		ck_assert_uint_eq(o.received[i], i);
	owner_free(&o);
	ck_assert_uint_eq(o.discarded, 0);
}
END_TEST

/* Messages of different producers interleave, but each producer's arrive
 * in the order it posted them, none twice and none lost. */
START_TEST(producers_keep_their_order)
{
	struct owner o;
	struct producer producers[PRODUCERS];
	uint32_t next[PRODUCERS] = {0};

	owner_init(&o, (size_t)MESSAGES * PRODUCERS);
	run_producers(&o, producers, PRODUCERS);

	ck_assert_uint_eq(o.n_received, (size_t)MESSAGES * PRODUCERS);
	for (size_t i = 0; i < o.n_received; i++) {
		uint32_t id = o.received[i] >> 24;
		uint32_t seq = o.received[i] & 0xffffff;

		ck_assert_uint_lt(id, PRODUCERS);
		ck_assert_uint_eq(seq, next[id]);
		next[id]++;
	}
	for (size_t i = 0; i < PRODUCERS; i++)
		ck_assert_uint_eq(next[i], MESSAGES);
	owner_free(&o);
}
END_TEST

/* A message posted from inside a delivery arrives too: the mailbox is not
 * locked while it delivers, and the post wakes the loop again. */
static void
post_next(void *arg)
{
	struct letter *l = arg;
	struct owner *o = l->owner;
	uint32_t value = l->value;
	struct letter *next;

	record(l);
	if (o->n_received == o->expected)
		return;
	next = malloc(sizeof(*next));
	ck_assert_ptr_nonnull(next);
	*next = (struct letter){.owner = o, .value = value + 1};
	ck_assert_int_eq(tg_mailbox_post(o->mailbox, post_next, count_discard, next), 0);
}

START_TEST(delivery_may_post_again)
{
	struct owner o;
	struct letter *first;

	owner_init(&o, 5);
	first = malloc(sizeof(*first));
	ck_assert_ptr_nonnull(first);
	*first = (struct letter){.owner = &o, .value = 0};
	ck_assert_int_eq(tg_mailbox_post(o.mailbox, post_next, count_discard, first), 0);
	ck_assert_int_eq(event_base_dispatch(o.base), 0);
	ck_assert_uint_eq(o.n_received, 5);
	for (uint32_t i = 0; i < 5; i++)
		ck_assert_uint_eq(o.received[i], i);
	owner_free(&o);
}
END_TEST

/* Freeing the mailbox hands each undelivered message to its discard
 * function, if it has one, and delivers nothing. */
START_TEST(free_discards_undelivered)
{
	struct owner o;

	owner_init(&o, 0);
	post_value(&o, 1);
	post_value(&o, 2);
	ck_assert_int_eq(tg_mailbox_post(o.mailbox, record, NULL, NULL), 0);
	post_value(&o, 3);
	owner_free(&o);
	ck_assert_uint_eq(o.discarded, 3);
	ck_assert_uint_eq(o.n_received, 0);
}
END_TEST

static Suite *
mailbox_suite(void)
{
	Suite *s = suite_create("mailbox");
	TCase *order = tcase_create("order");
	TCase *life = tcase_create("life");

	tcase_add_test(order, one_producer_in_order);
	tcase_add_test(order, producers_keep_their_order);
	tcase_add_test(order, delivery_may_post_again);
	suite_add_tcase(s, order);
	tcase_add_test(life, free_discards_undelivered);
	suite_add_tcase(s, life);
	return s;
}

int
main(void)
{
	SRunner *runner;
	int failed;

	/* As in tollgate: thread support on, the owner's base still lock-free. */
	evthread_use_pthreads();
	runner = srunner_create(mailbox_suite());
	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
