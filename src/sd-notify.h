/*
 * State notices to the service manager, in systemd's notify protocol
 * (sd_notify(3)): each notice is one datagram of "NAME=value" lines sent to
 * the AF_UNIX socket that $NOTIFY_SOCKET names. A unit with Type=notify
 * counts the service as started when READY=1 arrives, so that systemctl
 * start returns once the listeners take connections.
 *
 * The protocol is one sendto() of a line of text; libsystemd, which
 * implements it too, would be a dependency for that call alone.
 *
 * Without $NOTIFY_SOCKET (not started by systemd, or not with
 * Type=notify) tg_notify() does nothing.
 */
#ifndef TOLLGATE_SD_NOTIFY_H
#define TOLLGATE_SD_NOTIFY_H

/* Send state, such as "READY=1" or "STOPPING=1", to the service manager.
 * A failure is logged as a warning, once, and not retried: the gateway
 * serves whether or not the manager heard. Call from the main thread. */
void tg_notify(const char *state);

#endif
