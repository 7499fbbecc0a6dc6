/*
 * Names of span attributes and events, in one table. The gen_ai.* names
 * follow the OpenTelemetry GenAI semantic conventions (v1.41.1, still
 * marked "Development"), the http.*, url.*, server.*, client.* and error.*
 * names the HTTP and general conventions. When a revision renames an
 * attribute, change its string here and nowhere else.
 *
 * Names under tollgate.* are the gateway's own, for facts that no
 * convention covers.
 */
#ifndef TOLLGATE_TRACE_SEMCONV_H
#define TOLLGATE_TRACE_SEMCONV_H

#include <stdint.h>

#define TG_SEMCONV_TABLE(X) \
	/* GenAI inference spans */ \
	X(GEN_AI_OPERATION_NAME, "gen_ai.operation.name") \
	X(GEN_AI_PROVIDER_NAME, "gen_ai.provider.name") \
	X(GEN_AI_REQUEST_MODEL, "gen_ai.request.model") \
	X(GEN_AI_REQUEST_STREAM, "gen_ai.request.stream") \
	X(GEN_AI_REQUEST_MAX_TOKENS, "gen_ai.request.max_tokens") \
	X(GEN_AI_REQUEST_TEMPERATURE, "gen_ai.request.temperature") \
	X(GEN_AI_REQUEST_TOP_P, "gen_ai.request.top_p") \
	X(GEN_AI_REQUEST_TOP_K, "gen_ai.request.top_k") \
	X(GEN_AI_REQUEST_STOP_SEQUENCES, "gen_ai.request.stop_sequences") \
	X(GEN_AI_REQUEST_SEED, "gen_ai.request.seed") \
	X(GEN_AI_REQUEST_FREQUENCY_PENALTY, "gen_ai.request.frequency_penalty") \
	X(GEN_AI_REQUEST_PRESENCE_PENALTY, "gen_ai.request.presence_penalty") \
	X(GEN_AI_REQUEST_CHOICE_COUNT, "gen_ai.request.choice.count") \
	X(GEN_AI_OUTPUT_TYPE, "gen_ai.output.type") \
	X(GEN_AI_REQUEST_ENCODING_FORMATS, "gen_ai.request.encoding_formats") \
	X(GEN_AI_EMBEDDINGS_DIMENSION_COUNT, "gen_ai.embeddings.dimension.count") \
	X(GEN_AI_RESPONSE_ID, "gen_ai.response.id") \
	X(GEN_AI_RESPONSE_MODEL, "gen_ai.response.model") \
	X(GEN_AI_RESPONSE_FINISH_REASONS, "gen_ai.response.finish_reasons") \
	X(GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, "gen_ai.response.time_to_first_chunk") \
	X(GEN_AI_USAGE_INPUT_TOKENS, "gen_ai.usage.input_tokens") \
	X(GEN_AI_USAGE_OUTPUT_TOKENS, "gen_ai.usage.output_tokens") \
	X(GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, "gen_ai.usage.cache_read.input_tokens") \
	X(GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, "gen_ai.usage.cache_creation.input_tokens") \
	X(GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, "gen_ai.usage.reasoning.output_tokens") \
	X(GEN_AI_INPUT_MESSAGES, "gen_ai.input.messages") \
	X(GEN_AI_OUTPUT_MESSAGES, "gen_ai.output.messages") \
	X(GEN_AI_SYSTEM_INSTRUCTIONS, "gen_ai.system_instructions") \
	/* HTTP and network */ \
	X(HTTP_REQUEST_METHOD, "http.request.method") \
	X(HTTP_RESPONSE_STATUS_CODE, "http.response.status_code") \
	X(HTTP_ROUTE, "http.route") \
	X(URL_PATH, "url.path") \
	X(URL_SCHEME, "url.scheme") \
	X(URL_TEMPLATE, "url.template") \
	X(SERVER_ADDRESS, "server.address") \
	X(SERVER_PORT, "server.port") \
	X(CLIENT_ADDRESS, "client.address") \
	X(ERROR_TYPE, "error.type") \
	/* Resource */ \
	X(SERVICE_NAME, "service.name") \
	X(SERVICE_VERSION, "service.version") \
	X(SERVICE_INSTANCE_ID, "service.instance.id") \
	X(TELEMETRY_SDK_NAME, "telemetry.sdk.name") \
	X(TELEMETRY_SDK_LANGUAGE, "telemetry.sdk.language") \
	/* The gateway's own */ \
	X(TOLLGATE_REQUEST_ID, "tollgate.request_id") \
	X(TOLLGATE_ROUTE, "tollgate.route") \
	X(TOLLGATE_KEY, "tollgate.key") \
	X(TOLLGATE_BACKEND, "tollgate.backend") \
	X(TOLLGATE_ATTEMPT, "tollgate.attempt") \
	X(TOLLGATE_TERMINATION, "tollgate.termination") \
	X(TOLLGATE_CACHE_RESULT, "tollgate.cache.result") \
	X(TOLLGATE_CACHE_STORE, "tollgate.cache.store") \
	X(TOLLGATE_FILTER_NAME, "tollgate.filter.name") \
	X(TOLLGATE_FILTER_STAGE, "tollgate.filter.stage") \
	X(TOLLGATE_FILTER_DECISION, "tollgate.filter.decision") \
	X(TOLLGATE_FILTER_RULE, "tollgate.filter.rule") \
	X(TOLLGATE_FILTER_UNMASKABLE, "tollgate.filter.unmaskable") \
	X(TOLLGATE_FAILOVER_FROM, "tollgate.failover.from") \
	X(TOLLGATE_FAILOVER_REASON, "tollgate.failover.reason") \
	/* Event names */ \
	X(EVENT_FIRST_TOKEN, "tollgate.first_token") \
	X(EVENT_FAILOVER, "tollgate.failover")

/*
 * Each text has one entry (a unit test checks it), so that an entry is a
 * key's bit in tg_attrs.semconv_keys. An event name with the text of an
 * attribute name is therefore the attribute's entry under a second name.
 */
enum tg_semconv {
#define TG_SEMCONV_ENUM(id, name) TG_SC_##id,
	TG_SEMCONV_TABLE(TG_SEMCONV_ENUM)
#undef TG_SEMCONV_ENUM
	TG_SC_COUNT,
	TG_SC_EVENT_FILTER_DECISION = TG_SC_TOLLGATE_FILTER_DECISION,
};

/* Bytes of each name's slot: the longest name (36 bytes) and its NUL
 * fit, and trace-span.c fails to compile when a new name does not. A
 * power of two, so that a name's entry is its offset shifted: with 48,
 * tg_semconv_is_name() and tg_semconv_id() took a multiplication each,
 * about 8 instructions per attribute set and again per attribute written. */
#define TG_SEMCONV_SLOT 64

/* The names, one per slot of one array, so that a name's address shows
 * that it is one (tg_semconv_is_name) and which one (tg_semconv_id). */
extern const char tg_semconv_slots[TG_SC_COUNT][TG_SEMCONV_SLOT];

/* The length of each name, by enum tg_semconv. */
extern const uint8_t tg_semconv_lengths[TG_SC_COUNT];

/* The names by enum tg_semconv, for tables indexed by it. */
extern const char *const tg_semconv_names[TG_SC_COUNT];

/* The name of entry id, as a string with static storage. */
#define TG_SC(id) ((const char *)tg_semconv_slots[TG_SC_##id])

/*
 * Return 1 when s is a name of the table, as TG_SC() and tg_semconv_names
 * give them, and 0 for any other string. Names are plain ASCII (a unit
 * test checks it), so the OTLP encoder writes them without escaping.
 */
static inline int
tg_semconv_is_name(const char *s)
{
	/* Compared as integers: C orders pointers only within one object. */
	uintptr_t offset = (uintptr_t)s - (uintptr_t)tg_semconv_slots;

	return offset < sizeof(tg_semconv_slots) && offset % TG_SEMCONV_SLOT == 0;
}

/* The entry of s, a name for which tg_semconv_is_name() returns 1. */
static inline enum tg_semconv
tg_semconv_id(const char *s)
{
	return (enum tg_semconv)(((uintptr_t)s - (uintptr_t)tg_semconv_slots) / TG_SEMCONV_SLOT);
}

#endif
