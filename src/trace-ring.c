/*
 * Recent traces for the admin listener.
 */
#include <stdlib.h>
#include <string.h>

#include "trace-context.h"
#include "trace-ring.h"
#include "trace-semconv.h"
#include "trace-span.h"

void
tg_span_unref(struct tg_span *span)
{
	if (--span->refs == 0)
		tg_span_free(span);
}

#define TAILS ((size_t)1 << TG_RING_TAIL_BITS)

_Static_assert(TAILS <= 256 * TG_TRACE_ID_SIZE, "the tail fits in a trace id");
_Static_assert(TG_RING_MAX_TRACES <= UINT16_MAX, "a tail's count fits in its counter");

/* The tail of a trace id: its last TG_RING_TAIL_BITS bits. */
static size_t
tail_of(const uint8_t *trace_id)
{
	size_t last_two = (size_t)trace_id[TG_TRACE_ID_SIZE - 2] << 8 |
	                  trace_id[TG_TRACE_ID_SIZE - 1];

	return last_two & (TAILS - 1);
}

int
tg_trace_ring_init(struct tg_trace_ring *r, size_t capacity)
{
	memset(r, 0, sizeof(*r));
	if (pthread_mutex_init(&r->lock, NULL) != 0)
		return -1;
	r->by_tail = calloc(TAILS, sizeof(*r->by_tail));
	if (capacity > 0)
		r->traces = calloc(capacity, sizeof(*r->traces));
	if (r->by_tail == NULL || (capacity > 0 && r->traces == NULL)) {
		free(r->by_tail);
		free(r->traces);
		pthread_mutex_destroy(&r->lock);
		return -1;
	}
	r->capacity = capacity;
	return 0;
}

/* The spans of t, in their array or in t itself. */
static struct tg_span *const *
spans_of(const struct tg_ring_trace *t)
{
	return t->spans != NULL ? t->spans : t->first;
}

static void
trace_clear(struct tg_ring_trace *t)
{
	struct tg_span *const *spans = spans_of(t);

	for (size_t i = 0; i < t->n_spans; i++)
		tg_span_unref(spans[i]);
	free(t->spans);
	memset(t, 0, sizeof(*t));
}

/* Stop keeping trace t of r. */
static void
forget_trace(struct tg_trace_ring *r, struct tg_ring_trace *t)
{
	r->by_tail[tail_of(t->trace_id)]--;
	trace_clear(t);
}

static struct tg_ring_trace *
slot(struct tg_trace_ring *r, size_t i)
{
	return &r->traces[(r->head + i) % r->capacity];
}

void
tg_trace_ring_free(struct tg_trace_ring *r)
{
	for (size_t i = 0; i < r->count; i++)
		trace_clear(slot(r, i));
	free(r->traces);
	free(r->by_tail);
	pthread_mutex_destroy(&r->lock);
	memset(r, 0, sizeof(*r));
}

/* Return whether two trace ids are equal, compared as two 64-bit words,
 * since a call to memcmp per kept trace cost about as much as the rest
 * of the search. */
static inline int
same_trace_id(const uint8_t *a, const uint8_t *b)
{
	uint64_t x[2], y[2];

	_Static_assert(sizeof(x) == TG_TRACE_ID_SIZE, "a trace id is two 64-bit words");
	memcpy(x, a, sizeof(x));
	memcpy(y, b, sizeof(y));
	return x[0] == y[0] && x[1] == y[1];
}

/* The trace with this id among traces[from] to traces[to - 1], the last
 * first; NULL when none has it. */
static struct tg_ring_trace *
find_in(struct tg_ring_trace *traces, size_t from, size_t to, const uint8_t *trace_id)
{
	for (size_t i = to; i > from; i--) {
		if (same_trace_id(traces[i - 1].trace_id, trace_id))
			return &traces[i - 1];
	}
	return NULL;
}

/*
 * The kept trace with this id, newest first since a span most likely
 * belongs to a trace that just arrived; NULL when not kept. Every span of
 * a new trace looks at all the kept ones, so the ring is read as the one
 * or two runs of the array it covers, without a division per trace as
 * slot() would take.
 */
static struct tg_ring_trace *
find_trace(struct tg_trace_ring *r, const uint8_t *trace_id)
{
	size_t end = r->head + r->count;        /* after the newest, not wrapped */
	struct tg_ring_trace *t = NULL;

	if (r->by_tail[tail_of(trace_id)] == 0)
		return NULL;
	if (end > r->capacity)
		t = find_in(r->traces, 0, end - r->capacity, trace_id);
	if (t == NULL)
		t = find_in(r->traces, r->head, end < r->capacity ? end : r->capacity, trace_id);
	return t;
}

static struct tg_ring_trace *
newest_trace(struct tg_trace_ring *r, const uint8_t *trace_id)
{
	struct tg_ring_trace *t;

	if (r->count == r->capacity) {
		forget_trace(r, slot(r, 0));
		r->head = (r->head + 1) % r->capacity;
		r->count--;
	}
	t = slot(r, r->count++);
	memcpy(t->trace_id, trace_id, TG_TRACE_ID_SIZE);
	r->by_tail[tail_of(trace_id)]++;
	t->added_seq = ++r->seq;
	return t;
}

/* Double the room for t's spans, moving them out of t itself the first
 * time. Returns 0, or -1 when out of memory. */
static int
grow_spans(struct tg_ring_trace *t)
{
	size_t capacity = t->spans != NULL ? t->capacity * 2 : TG_RING_FIRST_SPANS * 2;
	struct tg_span **spans = realloc(t->spans, capacity * sizeof(*spans));

	if (spans == NULL)
		return -1;
	if (t->spans == NULL)
		memcpy(spans, t->first, sizeof(t->first));
	t->spans = spans;
	t->capacity = capacity;
	return 0;
}

static int
append_span(struct tg_ring_trace *t, struct tg_span *span)
{
	if (t->n_spans == TG_RING_MAX_SPANS)
		return -1;
	if (t->spans == NULL && t->n_spans < TG_RING_FIRST_SPANS) {
		t->first[t->n_spans++] = span;
		span->refs++;
		return 0;
	}
	if ((t->spans == NULL || t->n_spans == t->capacity) && grow_spans(t) != 0)
		return -1;
	t->spans[t->n_spans++] = span;
	span->refs++;
	return 0;
}

void
tg_trace_ring_add(struct tg_trace_ring *r, struct tg_span *span)
{
	tg_trace_ring_add_spans(r, &span, 1);
}

void
tg_trace_ring_add_spans(struct tg_trace_ring *r, struct tg_span *const *spans, size_t n)
{
	struct tg_ring_trace *last = NULL;

	if (r->capacity == 0 || n == 0)
		return;
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *trace_id = spans[i]->trace_id;
		struct tg_ring_trace *t = NULL;

		/* A request's last spans end together, so a span often
		 * belongs to the trace of the one before it. */
		if (last != NULL && same_trace_id(last->trace_id, trace_id))
			t = last;
		else if ((t = find_trace(r, trace_id)) == NULL)
			t = newest_trace(r, trace_id);
		append_span(t, spans[i]);
		last = t;
	}
	pthread_mutex_unlock(&r->lock);
}

void
tg_trace_ring_resize(struct tg_trace_ring *r, size_t capacity)
{
	struct tg_ring_trace *traces = NULL;
	size_t keep;

	if (capacity == r->capacity)
		return;
	if (capacity > 0 && (traces = calloc(capacity, sizeof(*traces))) == NULL)
		return;         /* keep the old size rather than lose traces */

	pthread_mutex_lock(&r->lock);
	keep = r->count < capacity ? r->count : capacity;
	for (size_t i = 0; i < r->count - keep; i++)
		forget_trace(r, slot(r, i));
	for (size_t i = 0; i < keep; i++)
		traces[i] = *slot(r, r->count - keep + i);
	free(r->traces);
	r->traces = traces;
	r->capacity = capacity;
	r->head = 0;
	r->count = keep;
	pthread_mutex_unlock(&r->lock);
}

/* The span that stands for the trace: the server span, else the first. */
static const struct tg_span *
root_span(const struct tg_ring_trace *t)
{
	struct tg_span *const *spans = spans_of(t);

	for (size_t i = 0; i < t->n_spans; i++) {
		if (spans[i]->kind == TG_SPAN_SERVER)
			return spans[i];
	}
	return spans[0];
}

static json_t *
trace_summary(const struct tg_ring_trace *t)
{
	const struct tg_span *root = root_span(t);
	const struct tg_attr *request_id = tg_attrs_find(&root->attrs, TG_SC(TOLLGATE_REQUEST_ID));
	char trace_id[2 * TG_TRACE_ID_SIZE + 1];
	uint64_t start = root->start_ns, end = root->end_ns;
	int error = 0;

	for (size_t i = 0; i < t->n_spans; i++) {
		const struct tg_span *s = spans_of(t)[i];

		error |= s->status == TG_STATUS_ERROR;
		if (s->start_ns < start)
			start = s->start_ns;
		if (s->end_ns > end)
			end = s->end_ns;
	}
	tg_hex_encode(trace_id, t->trace_id, TG_TRACE_ID_SIZE);
	return json_pack("{s:s, s:s, s:I, s:f, s:I, s:b, s:o}",
	                 "trace_id", trace_id,
	                 "name", root->name,
	                 "start_time_unix_nano", (json_int_t)start,
	                 "duration", (double)(end - start) / 1e9,
	                 "spans", (json_int_t)t->n_spans,
	                 "error", error,
	                 "request_id", request_id && request_id->type == TG_ATTR_STRING
	                     ? json_string(request_id->v.s) : json_null());
}

json_t *
tg_trace_ring_list(struct tg_trace_ring *r)
{
	json_t *list = json_array();

	pthread_mutex_lock(&r->lock);
	for (size_t i = r->count; list != NULL && i > 0; i--) {
		if (json_array_append_new(list, trace_summary(slot(r, i - 1))) != 0) {
			json_decref(list);
			list = NULL;
		}
	}
	pthread_mutex_unlock(&r->lock);
	return json_pack("{s:o}", "traces", list);
}

json_t *
tg_trace_ring_get(struct tg_trace_ring *r, const char *trace_id_hex,
                  const struct tg_otlp_resource *resource)
{
	uint8_t trace_id[TG_TRACE_ID_SIZE];
	struct tg_ring_trace *t;
	json_t *result = NULL;

	if (strlen(trace_id_hex) != 2 * TG_TRACE_ID_SIZE ||
	    tg_hex_decode(trace_id, trace_id_hex, TG_TRACE_ID_SIZE) != 0)
		return NULL;

	pthread_mutex_lock(&r->lock);
	if (r->capacity > 0 && (t = find_trace(r, trace_id)) != NULL)
		result = tg_otlp_encode(spans_of(t), t->n_spans, resource);
	pthread_mutex_unlock(&r->lock);
	return result;
}
