/*
 * Access log: one JSON object per request, written with one write(2).
 */
#ifndef TOLLGATE_ACCESSLOG_H
#define TOLLGATE_ACCESSLOG_H

struct tg_request;

/* Open path for appending ("-" is stdout). Returns the fd, or -1 after
 * logging why. */
int tg_accesslog_open(const char *path);

/* Reopen path onto fd in place (log rotation); keeps fd on failure. */
int tg_accesslog_reopen(int fd, const char *path);

void tg_accesslog_write(int fd, const struct tg_request *req);

#endif
