#include "agent/ipc/audit.h"

#include <jansson.h>
#include <stdlib.h>
#include <time.h>

static void put(json_t *o, const char *k, const char *v)
{
	if (v)
		json_object_set_new(o, k, json_string(v));
}

void audit_emit(struct audit *a, const struct audit_event *e)
{
	a->count++;
	if (a->sink)
		a->sink(e, a->sink_ctx);
	if (!a->out)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char when[40];
	size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000);
	json_t *o = json_object();
	put(o, "time", when);
	put(o, "event", e->event);
	put(o, "partition", e->partition);
	put(o, "channel", e->channel);
	put(o, "reason", e->reason);
	put(o, "file", e->file);
	put(o, "detail", e->detail);
	/* Names come from specs and partitions; jansson escapes them. */
	char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER |
					   JSON_ENSURE_ASCII);
	if (line) {
		fprintf(a->out, "%s\n", line);
		fflush(a->out);
		free(line);
	}
	json_decref(o);
}
