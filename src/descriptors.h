/*
 * The process's file-descriptor limit and table, set at startup.
 */
#ifndef TOLLGATE_DESCRIPTORS_H
#define TOLLGATE_DESCRIPTORS_H

#include <stddef.h>

/* Descriptors reserved outside client and upstream connections. The whole
 * process needs some for standard streams, the access log, the main event
 * loop, the admin listener and a few admin connections, span export and
 * health probes. Each worker needs its event loop's four, DNS, Redis, one
 * connection accepted past the limit, and one more.
 * NOTE: these are estimates. One worker with one listener has 21
 * descriptors open after startup (measured), idle upstream pool
 * connections are not counted at all, and neither is an
 * admin_max_connections above its default of 16. */
#define TG_DESCRIPTORS_SPARE 32
#define TG_DESCRIPTORS_SPARE_PER_WORKER 8

/* Below this many client connections the limit is worth a warning. */
#define TG_DESCRIPTORS_FEW_CLIENTS 64

/*
 * Open /dev/null on each of descriptors 0, 1 and 2 that is closed, so that
 * no file, socket or pipe opened later takes a standard stream's number.
 * Call first in main(), before anything opens a descriptor. Returns 0, or
 * -1 when /dev/null cannot be opened (stderr may then be closed, so the
 * caller can only exit).
 */
int tg_descriptors_open_standard(void);

/*
 * Raise the soft open-files limit to the hard limit, then size the kernel's
 * descriptor table for it, up to a cap, so that workers do not wait for the
 * table to grow until that many descriptors are open. Call once, before
 * any thread starts. Failures are logged as warnings, and the gateway runs
 * on with the limit and table it has.
 */
void tg_descriptors_prepare(void);

/*
 * Check that the soft open-files limit leaves room for the spare of the
 * process and of workers each listening on listeners addresses, plus one
 * client connection and its upstream. Call after tg_descriptors_prepare()
 * and before anything else opens descriptors. Returns 0, or -1 after
 * logging the limit, the minimum and how to raise it: below that minimum
 * startup would fail in some event loop's setup with only libevent's
 * "Too many open files".
 */
int tg_descriptors_check(int workers, size_t listeners);

/*
 * Return how many client connections the workers may keep open at a time,
 * so that each has a descriptor left for its upstream connection under the
 * soft open-files limit. That is half of what the limit leaves after the
 * spare of the process and of each worker listening on listeners addresses.
 * At least 1; SIZE_MAX without a limit. Logs the number, and a warning
 * when the limit leaves room for fewer than TG_DESCRIPTORS_FEW_CLIENTS.
 */
size_t tg_descriptors_client_max(int workers, size_t listeners);

#endif
