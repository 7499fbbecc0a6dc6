/*
 * Unit tests for the in-process cache store (src/cache-memory.c): hits,
 * TTL expiry, LRU eviction, the byte bound, sharing between threads, and
 * the process store kept across configuration loads.
 */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache-memory.h"

/* A key whose first byte (the shard) and the rest are chosen. */
static void
make_key(unsigned char key[TG_CACHE_KEY_LEN], unsigned shard, unsigned n)
{
	memset(key, 0, TG_CACHE_KEY_LEN);
	key[0] = (unsigned char)shard;
	memcpy(key + 1, &n, sizeof(n));
	/* Also vary bytes outside the bucket index, so keys in one bucket
	 * differ only there and the chain walk must compare whole keys. */
	memcpy(key + 20, &n, sizeof(n));
}

static struct tg_cache_blob *
make_value(size_t len, char fill)
{
	char *data = malloc(len);
	struct tg_cache_blob *b;

	ck_assert_ptr_nonnull(data);
	memset(data, fill, len);
	b = tg_cache_blob_new(data, len);
	free(data);
	ck_assert_ptr_nonnull(b);
	return b;
}

static void
put(struct tg_cache_memory *m, unsigned shard, unsigned n, size_t len, uint64_t ttl,
    uint64_t now)
{
	unsigned char key[TG_CACHE_KEY_LEN];
	struct tg_cache_blob *v = make_value(len, (char)('a' + n % 26));

	make_key(key, shard, n);
	ck_assert_int_eq(tg_cache_memory_put(m, key, v, ttl, now), 0);
	tg_cache_blob_unref(v);
}

/* 1 when key (shard, n) is found at time now. */
static int
has(struct tg_cache_memory *m, unsigned shard, unsigned n, uint64_t now)
{
	unsigned char key[TG_CACHE_KEY_LEN];
	struct tg_cache_blob *v;

	make_key(key, shard, n);
	v = tg_cache_memory_get(m, key, now);
	if (v == NULL)
		return 0;
	ck_assert_int_eq(v->data[0], 'a' + n % 26);
	tg_cache_blob_unref(v);
	return 1;
}

START_TEST(get_after_put)
{
	struct tg_cache_memory *m = tg_cache_memory_new(1 << 20);
	unsigned char key[TG_CACHE_KEY_LEN];
	struct tg_cache_blob *v = tg_cache_blob_new("hello", 5);
	struct tg_cache_blob *got;
	struct tg_cache_memory_stats st;

	make_key(key, 3, 1);
	ck_assert_ptr_null(tg_cache_memory_get(m, key, 0));
	ck_assert_int_eq(tg_cache_memory_put(m, key, v, 1000, 0), 0);
	tg_cache_blob_unref(v);

	got = tg_cache_memory_get(m, key, 10);
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(got->len, 5);
	ck_assert_str_eq(got->data, "hello");
	tg_cache_blob_unref(got);

	tg_cache_memory_stats(m, &st);
	ck_assert_uint_eq(st.entries, 1);
	ck_assert_uint_eq(st.hits, 1);
	ck_assert_uint_eq(st.misses, 1);
	ck_assert_uint_eq(st.inserts, 1);
	tg_cache_memory_unref(m);
}
END_TEST

START_TEST(put_replaces_same_key)
{
	struct tg_cache_memory *m = tg_cache_memory_new(1 << 20);
	unsigned char key[TG_CACHE_KEY_LEN];
	struct tg_cache_blob *a = tg_cache_blob_new("first", 5);
	struct tg_cache_blob *b = tg_cache_blob_new("second", 6);
	struct tg_cache_blob *got;
	struct tg_cache_memory_stats st;

	make_key(key, 0, 9);
	ck_assert_int_eq(tg_cache_memory_put(m, key, a, 1000, 0), 0);
	ck_assert_int_eq(tg_cache_memory_put(m, key, b, 1000, 0), 0);
	got = tg_cache_memory_get(m, key, 0);
	ck_assert_str_eq(got->data, "second");
	tg_cache_blob_unref(got);

	/* The old value is no longer charged: the bytes are those of a store
	 * that only ever held the new one. */
	tg_cache_memory_stats(m, &st);
	ck_assert_uint_eq(st.entries, 1);
	{
		struct tg_cache_memory *only_b = tg_cache_memory_new(1 << 20);
		struct tg_cache_memory_stats st_b;

		ck_assert_int_eq(tg_cache_memory_put(only_b, key, b, 1000, 0), 0);
		tg_cache_memory_stats(only_b, &st_b);
		ck_assert_uint_eq(st.bytes, st_b.bytes);
		tg_cache_memory_unref(only_b);
	}
	tg_cache_blob_unref(a);
	tg_cache_blob_unref(b);
	tg_cache_memory_unref(m);
}
END_TEST

START_TEST(entry_expires_after_ttl)
{
	struct tg_cache_memory *m = tg_cache_memory_new(1 << 20);
	struct tg_cache_memory_stats st;

	put(m, 1, 1, 100, 500, 1000);
	ck_assert(has(m, 1, 1, 1000));
	ck_assert(has(m, 1, 1, 1499));
	ck_assert(!has(m, 1, 1, 1500));

	/* It was removed, not only hidden. */
	tg_cache_memory_stats(m, &st);
	ck_assert_uint_eq(st.entries, 0);
	ck_assert_uint_eq(st.bytes, 0);
	ck_assert_uint_eq(st.expirations, 1);
	ck_assert(!has(m, 1, 1, 0));
	tg_cache_memory_unref(m);
}
END_TEST

/* Shard size 16 KiB: each 3000-byte value fits five times. */
#define LRU_MAX (16 * 16 * 1024)

START_TEST(least_recently_used_goes_first)
{
	struct tg_cache_memory *m = tg_cache_memory_new(LRU_MAX);
	struct tg_cache_memory_stats st;

	for (unsigned n = 0; n < 5; n++)
		put(m, 2, n, 3000, 60000, 0);
	for (unsigned n = 0; n < 5; n++)
		ck_assert_msg(has(m, 2, n, 0), "entry %u missing before the shard is full", n);

	/* Use 0 again, so that 1 is now the least recently used. */
	ck_assert(has(m, 2, 0, 1));
	put(m, 2, 5, 3000, 60000, 2);

	ck_assert(has(m, 2, 0, 3));
	ck_assert(!has(m, 2, 1, 3));
	for (unsigned n = 2; n <= 5; n++)
		ck_assert_msg(has(m, 2, n, 3), "entry %u was evicted", n);

	tg_cache_memory_stats(m, &st);
	ck_assert_uint_eq(st.evictions, 1);
	ck_assert_uint_eq(st.entries, 5);
	tg_cache_memory_unref(m);
}
END_TEST

START_TEST(expired_entries_make_room_first)
{
	struct tg_cache_memory *m = tg_cache_memory_new(LRU_MAX);
	struct tg_cache_memory_stats st;

	put(m, 4, 0, 3000, 10, 0);              /* expires at 10 */
	for (unsigned n = 1; n < 5; n++)
		put(m, 4, n, 3000, 60000, 0);
	put(m, 4, 5, 3000, 60000, 100);

	tg_cache_memory_stats(m, &st);
	ck_assert_uint_eq(st.expirations, 1);
	ck_assert_uint_eq(st.evictions, 0);
	for (unsigned n = 1; n <= 5; n++)
		ck_assert(has(m, 4, n, 100));
	tg_cache_memory_unref(m);
}
END_TEST

START_TEST(bytes_stay_within_bound)
{
	size_t max = 64 * 1024;
	struct tg_cache_memory *m = tg_cache_memory_new(max);
	struct tg_cache_memory_stats st;

	/* Unique keys over every shard, values of varied sizes. */
	for (unsigned n = 0; n < 5000; n++) {
		put(m, n % 251, n, 100 + (n * 37) % 1500, 60000, n);
		tg_cache_memory_stats(m, &st);
		ck_assert_msg(st.bytes <= max, "%zu bytes stored after %u puts, bound %zu",
		              st.bytes, n + 1, max);
	}
	ck_assert_uint_gt(st.evictions, 0);
	ck_assert_uint_gt(st.entries, 0);

	/* The most recent entry survived. */
	ck_assert(has(m, 4999 % 251, 4999, 5000));
	tg_cache_memory_unref(m);
}
END_TEST

START_TEST(oversized_entry_rejected)
{
	struct tg_cache_memory *m = tg_cache_memory_new(16 * 1024);
	unsigned char key[TG_CACHE_KEY_LEN];
	struct tg_cache_blob *v = make_value(2000, 'x');
	struct tg_cache_memory_stats st;

	/* One shard's share is 1 KiB. */
	make_key(key, 0, 0);
	ck_assert_int_eq(tg_cache_memory_put(m, key, v, 1000, 0), -1);
	tg_cache_blob_unref(v);
	tg_cache_memory_stats(m, &st);
	ck_assert_uint_eq(st.rejected, 1);
	ck_assert_uint_eq(st.entries, 0);
	tg_cache_memory_unref(m);
}
END_TEST

START_TEST(value_outlives_eviction)
{
	struct tg_cache_memory *m = tg_cache_memory_new(LRU_MAX);
	unsigned char key[TG_CACHE_KEY_LEN];
	struct tg_cache_blob *held;

	put(m, 5, 0, 3000, 60000, 0);
	make_key(key, 5, 0);
	held = tg_cache_memory_get(m, key, 0);
	ck_assert_ptr_nonnull(held);

	/* Push it out, then free the whole store: the reader's reference
	 * still reads the bytes (AddressSanitizer would flag a free). */
	for (unsigned n = 1; n < 10; n++)
		put(m, 5, n, 3000, 60000, 0);
	ck_assert(!has(m, 5, 0, 0));
	tg_cache_memory_unref(m);
	ck_assert_int_eq(held->data[2999], 'a');
	tg_cache_blob_unref(held);
}
END_TEST

struct thread_arg {
	struct tg_cache_memory *m;
	unsigned id;
	unsigned found;
};

static void *
hammer(void *p)
{
	struct thread_arg *a = p;

	/* Each thread writes its own keys and reads everyone's. */
	for (unsigned n = 0; n < 2000; n++) {
		unsigned char key[TG_CACHE_KEY_LEN];
		struct tg_cache_blob *v = tg_cache_blob_new(&n, sizeof(n));
		struct tg_cache_blob *got;

		make_key(key, n % 16, a->id * 100000 + n);
		tg_cache_memory_put(a->m, key, v, 60000, 0);
		tg_cache_blob_unref(v);
		make_key(key, n % 16, ((a->id + 1) % 4) * 100000 + n / 2);
		got = tg_cache_memory_get(a->m, key, 0);
		if (got != NULL) {
			a->found++;
			tg_cache_blob_unref(got);
		}
	}
	return NULL;
}

START_TEST(threads_share_store)
{
	/* Large enough that nothing is evicted, so every entry written must
	 * be found afterwards whichever thread wrote it. */
	struct tg_cache_memory *m = tg_cache_memory_new(16 << 20);
	struct thread_arg args[4];
	pthread_t threads[4];
	struct tg_cache_memory_stats st;
	unsigned found = 0;

	for (unsigned i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){.m = m, .id = i};
		ck_assert_int_eq(pthread_create(&threads[i], NULL, hammer, &args[i]), 0);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(threads[i], NULL);
		found += args[i].found;
	}

	tg_cache_memory_stats(m, &st);
	ck_assert_uint_eq(st.evictions, 0);
	ck_assert_uint_eq(st.entries, 4 * 2000);
	ck_assert_uint_eq(st.hits, found);
	ck_assert_uint_eq(st.hits + st.misses, 4 * 2000);
	ck_assert_uint_eq(st.inserts, 4 * 2000);

	/* Entries written by one thread are there for another. */
	for (unsigned i = 0; i < 4; i++) {
		for (unsigned n = 0; n < 2000; n++) {
			unsigned char key[TG_CACHE_KEY_LEN];
			struct tg_cache_blob *got;

			make_key(key, n % 16, i * 100000 + n);
			got = tg_cache_memory_get(m, key, 0);
			ck_assert_msg(got != NULL, "entry %u of thread %u missing", n, i);
			ck_assert_mem_eq(got->data, &n, sizeof(n));
			tg_cache_blob_unref(got);
		}
	}
	tg_cache_memory_unref(m);
}
END_TEST

START_TEST(acquire_keeps_store_of_same_size)
{
	struct tg_cache_memory *a = tg_cache_memory_acquire(1 << 20);
	struct tg_cache_memory *b = tg_cache_memory_acquire(1 << 20);
	struct tg_cache_memory *c = tg_cache_memory_acquire(2 << 20);
	struct tg_cache_memory *d;

	ck_assert_ptr_eq(a, b);
	ck_assert_ptr_ne(a, c);
	ck_assert_uint_eq(tg_cache_memory_max_bytes(c), 2 << 20);

	/* c became the process's store, so a's size now gets a new one. */
	d = tg_cache_memory_acquire(1 << 20);
	ck_assert_ptr_ne(d, a);

	tg_cache_memory_unref(a);
	tg_cache_memory_unref(b);
	tg_cache_memory_unref(c);
	tg_cache_memory_unref(d);

	/* All released: a new acquire starts from scratch. */
	a = tg_cache_memory_acquire(1 << 20);
	put(a, 0, 1, 10, 1000, 0);
	b = tg_cache_memory_acquire(1 << 20);
	ck_assert(has(b, 0, 1, 0));
	tg_cache_memory_unref(a);
	tg_cache_memory_unref(b);
}
END_TEST

static Suite *
cache_memory_suite(void)
{
	Suite *s = suite_create("cache-memory");
	TCase *basic = tcase_create("basic");
	TCase *bound = tcase_create("bound");
	TCase *shared = tcase_create("shared");

	tcase_add_test(basic, get_after_put);
	tcase_add_test(basic, put_replaces_same_key);
	tcase_add_test(basic, entry_expires_after_ttl);
	tcase_add_test(basic, value_outlives_eviction);
	suite_add_tcase(s, basic);

	tcase_add_test(bound, least_recently_used_goes_first);
	tcase_add_test(bound, expired_entries_make_room_first);
	tcase_add_test(bound, bytes_stay_within_bound);
	tcase_add_test(bound, oversized_entry_rejected);
	suite_add_tcase(s, bound);

	tcase_add_test(shared, threads_share_store);
	tcase_add_test(shared, acquire_keeps_store_of_same_size);
	suite_add_tcase(s, shared);
	return s;
}

int
main(void)
{
	SRunner *runner = srunner_create(cache_memory_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
