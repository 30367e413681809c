/* runtime/hostlist.h — expands a Slurm hostlist expression (the syntax of
 * SLURM_JOB_NODELIST, e.g. "node[01-03,07],gpu5,rack[1-2]-n[1-3]") into the
 * host names it stands for.  It owns nothing after a call returns: the array
 * and the names it hands out belong to the caller (loom__hostlist_free).
 *
 * Syntax: items separated by commas at the top level (commas inside [] do not
 * split).  An item is host-name text ([A-Za-z0-9._-]) with zero or more
 * bracket groups anywhere in it; a group is a comma-separated list of numbers
 * "7" and ranges "lo-hi" (lo <= hi, at most 10 digits each).  Several groups
 * give their cartesian product, the leftmost group outermost:
 * "r[1-2]-n[1-2]" is r1-n1 r1-n2 r2-n1 r2-n2.  Numbers are zero-padded to the
 * width of the lower bound as written, as Slurm does: "n[8-10]" is n8 n9 n10,
 * "n[08-10]" is n08 n09 n10.  Order is kept and duplicates are not removed.
 * Refused (LOOM_EINVAL with a message naming the item and the 1-based byte
 * position): an empty expression or item, whitespace, characters outside
 * [A-Za-z0-9._-] in host-name text, unbalanced or nested brackets, an empty
 * group or range, anything but digits, ',' and '-' inside brackets (so no
 * Slurm-unknown "x" steps), lo > hi, numbers over 10 digits, and any host
 * name over LOOM_HOSTLIST_NAME_MAX bytes.  The number of hosts is computed
 * (with overflow checks) before anything is expanded, so "n[0-9999999999]"
 * costs nothing when it is refused. */
#ifndef LOOM_RUNTIME_HOSTLIST_H
#define LOOM_RUNTIME_HOSTLIST_H
#include <stddef.h>

#define LOOM_HOSTLIST_NAME_MAX 255  /* longest host name, in bytes */
#define LOOM_HOSTLIST_DIGITS_MAX 10 /* longest number in a bracket group */

/* Expand expr into *hosts (an array of *n NUL-terminated names, in order).
 * Returns 0, LOOM_EINVAL (bad syntax; NULL arguments), LOOM_ETOOBIG (more
 * than max_hosts hosts, or more than 64 bits can count; checked before
 * expanding, so max_hosts 0 refuses everything) or LOOM_ENOMEM; on any
 * error *hosts is NULL, *n is 0, nothing is left allocated and err (which may
 * be NULL) says why. */
int loom__hostlist_expand(const char *expr, size_t max_hosts, char ***hosts, size_t *n,
                          char *err, size_t errlen);
/* Free what loom__hostlist_expand returned; NULL is fine. */
void loom__hostlist_free(char **hosts, size_t n);
#endif
