/*
 * The process's file-descriptor limit and table, set at startup.
 */
#ifndef TOLLGATE_DESCRIPTORS_H
#define TOLLGATE_DESCRIPTORS_H

/*
 * Raise the soft open-files limit to the hard limit, then size the kernel's
 * descriptor table for it, up to a cap, so that workers do not wait for the
 * table to grow until that many descriptors are open. Call once, before any thread starts. Failures are logged as
 * warnings; the gateway runs on with the limit and table it has.
 */
void tg_descriptors_prepare(void);

#endif
