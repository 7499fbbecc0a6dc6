/*
 * Cost of the content filters per KiB of prompt: request bodies of several
 * sizes through a mask filter with every preset and a caseless block rule,
 * and a streamed answer through the sliding window. Prints one Markdown
 * table row per case: microseconds per KiB, the median of the runs.
 *
 * Built and run by bench/filter-cost against a configured build tree.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "filter-rule.h"
#include "filter-stream.h"
#include "filter.h"
#include "relay.h"

#define RUNS 15

/* Filler text: English words, a little non-ASCII, and now and then a value
 * that a preset masks. */
static const char *const words[] = {
	"the", "gateway", "forwards", "each", "request", "to", "a", "backend,", "and",
	"résumé", "naïve", "日本語", "checks", "prompts", "for", "personal", "data.",
};

static void
fill(char *buf, size_t len)
{
	size_t n = 0, i = 0;

	while (n + 40 < len) {
		const char *w = i % 97 == 96 ? "jane.doe@example.com" : words[i % 17];

		n += (size_t)snprintf(buf + n, len - n, "%s ", w);
		i++;
	}
	buf[n] = '\0';
}

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int
compare(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static struct tg_filter *
make_filter(const char *name, enum tg_filter_action action, int presets)
{
	static const char *const preset_names[] = {
		"email", "phone", "credit_card", "api_key", "ipv4", "ipv6",
	};
	struct tg_filter *f = calloc(1, sizeof(*f));
	char err[256];

	f->name = strdup(name);
	f->type = TG_FILTER_REGEX;
	f->action = action;
	f->apply_to = TG_SIDE_REQUEST | TG_SIDE_RESPONSE;
	f->hold = TG_FILTER_HOLD;
	f->rules = calloc(6, sizeof(*f->rules));
	if (presets) {
		for (size_t i = 0; i < 6; i++)
			tg_rule_preset(&f->rules[f->n_rules++], preset_names[i]);
	} else {
		tg_rule_compile(&f->rules[f->n_rules++], "injection",
		                "ignore (all )?previous instructions", 1, err, sizeof(err));
	}
	for (size_t i = 0; i < f->n_rules; i++) {
		if (f->rules[i].lookbehind > f->lookbehind)
			f->lookbehind = f->rules[i].lookbehind;
	}
	return f;
}

static double
median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), compare);
	return v[n / 2];
}

/* One request body of size bytes through the chain; microseconds. */
static double
run_request(const struct tg_filter_chain *chain, const char *text)
{
	json_t *body = json_pack("{s:s, s:[{s:s, s:s}]}", "model", "m", "messages",
	                         "role", "user", "content", text);
	struct tg_text_list texts = {0};
	struct tg_filter_log log = {0};
	struct tg_filter_result res = {0};
	struct tg_scan sc;
	double start, end;

	tg_scan_init(&sc);
	start = now_us();
	tg_text_collect_request(body, &texts);
	tg_filter_texts(chain, TG_SIDE_REQUEST, &texts, &log, &sc, &res, NULL);
	end = now_us();
	tg_scan_free(&sc);
	tg_filter_log_free(&log);
	tg_text_list_free(&texts);
	json_decref(body);
	return end - start;
}

static void
discard(void *arg, struct tg_stream_event *ev)
{
	(void)arg;
	(void)ev;
}

/* The same text as a stream of 24-byte content events; microseconds. */
static double
run_stream(const struct tg_filter_chain *chain, const char *text)
{
	struct tg_filter_log log = {0};
	struct tg_filter_stream *s;
	size_t len = strlen(text);
	double start, end;
	int none;

	s = tg_filter_stream_new(chain, &log, NULL, discard, NULL, SIZE_MAX, &none);
	start = now_us();
	for (size_t off = 0; off < len;) {
		size_t n = len - off < 24 ? len - off : 24;
		struct tg_stream_event ev = {.kind = TG_EVENT_CONTENT, .raw = evbuffer_new()};
		char *data;

		/* Cut on a UTF-8 boundary. */
		while (off + n < len && ((unsigned char)text[off + n] & 0xc0) == 0x80)
			n++;
		ev.json = json_pack("{s:[{s:i, s:{s:s%}}]}", "choices", "index", 0, "delta",
		                    "content", text + off, n);
		data = json_dumps(ev.json, JSON_COMPACT);
		evbuffer_add_printf(ev.raw, "data: %s\n\n", data);
		tg_filter_stream_event(s, &ev);
		free(data);
		json_decref(ev.json);
		evbuffer_free(ev.raw);
		off += n;
	}
	tg_filter_stream_finish(s);
	end = now_us();
	tg_filter_stream_free(s);
	tg_filter_log_free(&log);
	return end - start;
}

int
main(void)
{
	static const size_t sizes[] = {1024, 16 * 1024, 256 * 1024};
	struct tg_filter *pii = make_filter("pii", TG_ACTION_MASK, 1);
	struct tg_filter *deny = make_filter("deny", TG_ACTION_BLOCK, 0);
	const struct tg_filter *filters[] = {pii, deny};
	struct tg_filter_chain chain = {2, filters};
	double t[RUNS];

	printf("| case | prompt size | µs per KiB (median of %d) |\n", RUNS);
	printf("| --- | ---: | ---: |\n");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char *text = malloc(sizes[i]);

		fill(text, sizes[i]);
		for (int r = 0; r < RUNS; r++)
			t[r] = run_request(&chain, text);
		printf("| request body | %zu KiB | %.1f |\n", sizes[i] / 1024,
		       median(t, RUNS) / ((double)strlen(text) / 1024));
		for (int r = 0; r < RUNS; r++)
			t[r] = run_stream(&chain, text);
		printf("| stream, 24-byte events | %zu KiB | %.1f |\n", sizes[i] / 1024,
		       median(t, RUNS) / ((double)strlen(text) / 1024));
		free(text);
	}

	tg_filter_free(pii);
	tg_filter_free(deny);
	free(pii);
	free(deny);
	return 0;
}
