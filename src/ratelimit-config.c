/*
 * gateway_keys.NAME.limits:
 *
 *   "gateway_keys": {
 *     "team-a": {"key": "${TEAM_A_KEY}",
 *                "limits": {"requests_per_minute": 600, "tokens_per_minute": 200000}}
 *   }
 *
 * Either limit may be left out, but not both.
 */
#include <stddef.h>

#include "ratelimit-bucket.h"
#include "ratelimit-config.h"
#include "ratelimit-t.h"

static const struct setting limit_settings[] = {
	{ .key = "requests_per_minute", .type = T_COUNT, .min = 1, .max = TG_BUCKET_LIMIT_MAX,
	  .offset = offsetof(struct tg_key_limits, requests_per_minute),
	  .help = "requests the key may send per minute, in bursts up to the same number; "
	          "absent: no limit" },
	{ .key = "tokens_per_minute", .type = T_COUNT, .min = 1, .max = TG_BUCKET_LIMIT_MAX,
	  .offset = offsetof(struct tg_key_limits, tokens_per_minute),
	  .help = "prompt plus completion tokens, as responses report them, that the key "
	          "may use per minute; absent: no limit" },
};
const struct section tg_key_limits_section = SECTION(limit_settings);

void
tg_parse_key_limits(struct load_ctx *ctx, const char *path, json_t *value, void *base,
                    const struct setting *s)
{
	struct tg_key_limits *limits = FIELD(base, s, struct tg_key_limits);

	if (!json_is_object(value)) {
		report_type(ctx, path, "an object with \"requests_per_minute\", "
		            "\"tokens_per_minute\" or both", value);
		return;
	}
	if (json_object_size(value) == 0) {
		report(ctx, path, "sets no limit; give \"requests_per_minute\", "
		       "\"tokens_per_minute\" or both, or remove \"limits\"");
		return;
	}
	parse_section(ctx, path, value, limits, &tg_key_limits_section);
}
