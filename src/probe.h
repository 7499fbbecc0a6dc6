/*
 * Active health probes: for each backend with health.probe.path, a GET of
 * that path every probe.interval. A 2xx answer ends an ejection at once; a
 * failure counts like a failed request toward ejection. Worker 0 runs them
 * on its own event loop, through the upstream layer, so TLS, pooling and
 * timeouts are the requests' own.
 */
#ifndef TOLLGATE_PROBE_H
#define TOLLGATE_PROBE_H

struct tg_worker;

/* (Re)start the probes of w's current configuration; worker thread only. */
void tg_probes_restart(struct tg_worker *w);

/* Stop and free every probe of w. */
void tg_probes_stop(struct tg_worker *w);

#endif
