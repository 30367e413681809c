/* loom/export.h — LOOM_API marks what loom's shared libraries export.
 *
 * libloom (and libloom_tune, libloom_shard) are built with hidden visibility:
 * only the functions the public headers in include/loom/ declare with
 * LOOM_API are in their dynamic symbol tables (tests/check_exports.sh checks
 * it).  Everything else is internal to the library that defines it. */
#ifndef LOOM_EXPORT_H
#define LOOM_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define LOOM_API __attribute__((visibility("default")))
#else
#define LOOM_API
#endif

#endif
