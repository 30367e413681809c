/* runtime/audit.h — the cluster's audit log: one JSON line per change of who
 * may do what or of what runs and is served (tokens, quotas, jobs, models,
 * deployments), appended to STATE_DIR/audit.log (mode 0600) by the head and
 * its gateway.  Lines are written whole with O_APPEND (never rewritten), and
 * synced by loom__audit_sync (the head's tick). */
#ifndef LOOM_RUNTIME_AUDIT_H
#define LOOM_RUNTIME_AUDIT_H

/* Open (create) dir/audit.log for appending; 0 or LOOM_EIO.  Until then (and
 * after loom__audit_close) loom__audit does nothing. */
int loom__audit_open(const char *dir);
void loom__audit_close(void);
/* Append {"time", "actor", "action", "object", "detail"}: actor is who did it
 * (a user, or "cluster" for a holder of the cluster's keys), action a dotted
 * verb ("job.submit", "token.create"), object what it was done to.  Strings
 * are escaped as JSON; NULL is "".  Thread-safe. */
void loom__audit(const char *actor, const char *action, const char *object, const char *detail);
void loom__audit_sync(void);
#endif
