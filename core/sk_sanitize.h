/*
 * The user's own sanitizers: AddressSanitizer and valgrind's memcheck see
 * slab objects as they see malloc's (docs/debug.md, "Your sanitizers").
 *
 * Slab memory comes from slabkit's own mappings, which neither tool knows
 * as heap: without help a use after free of a slab object is a plain
 * access to mapped memory.  When one of them is present (decided once at
 * init, sk_san_configure), every cache runs the debug layer's slow path
 * with red zones and its quarantine, and the debug layer tells the tool
 * which bytes the program may touch:
 *
 *   live object        accessible (valgrind: a MALLOCLIKE block, so that
 *                      memcheck's leak check sees it)
 *   kmalloc tail       [size asked for, object size): inaccessible
 *   red zones          inaccessible, live or free
 *   quarantined object inaccessible (valgrind: FREELIKE)
 *   in the backend     accessible to slabkit (the backend keeps its free
 *                      lists and headers inside free objects)
 *   slab tail, colour  inaccessible while the slab lives (the backend names
 *                      them: sk_slab_unused in sk_backend.h)
 *   large block        inaccessible past the size asked for (below)
 *
 * Core's own reads and writes of red zones and poison open the bytes
 * around them (sk_san_open / sk_san_close).  With neither tool present
 * nothing here runs: caches keep their fast paths.
 */
#ifndef SLABKIT_SANITIZE_H
#define SLABKIT_SANITIZE_H

#include <stdbool.h>
#include <stddef.h>

#pragma GCC visibility push(hidden)

/* Set by sk_san_configure; read-only afterwards. */
extern bool sk_san_on;

/* SLABKIT_SANITIZE: "auto" (NULL, the default: on when slabkit or the
 * program is built with ASan, or runs under valgrind), "on", "off".
 * 0 or -EINVAL (reported).  Before the first cache is created. */
int sk_san_configure(const char *mode);
/* What was found, for reports: "asan", "valgrind", "asan+valgrind", "none". */
const char *sk_san_tools(void);

/* A live object of `size` bytes at p is handed to the program; `defined`:
 * its bytes hold values (a constructor ran, or the slab was zeroed). */
void sk_san_alloc(const void *p, size_t size, bool defined);
/* The program freed it: inaccessible until sk_san_release. */
void sk_san_free(const void *p, size_t size);
/* Bytes go back to slabkit's own use (the backend, or core's checks). */
void sk_san_open(const void *p, size_t size);
/* Bytes the program must not touch (red zones, a kmalloc tail). */
void sk_san_close(const void *p, size_t size);

/*
 * Large blocks (kmalloc and malloc(9) above the largest class): while the
 * mode is on, the bytes from the size asked for to the end of the last
 * page are inaccessible; the size is kept in the block's descriptor
 * (lw_san_size).  set_size: the front end made the block (after its own
 * zeroing) or resized it in place, or ksize / malloc_usable_size gave the
 * caller the whole block; usable: what the caller may use (the whole
 * block when no size was set); open: every byte accessible again (the
 * block is freed).  Callers check sk_san_on first.
 */
struct sk_page;
void sk_san_large_set_size(void *p, size_t size);
size_t sk_san_large_usable(const struct sk_page *pg);
void sk_san_large_open(void *p, struct sk_page *pg);

#pragma GCC visibility pop

#endif /* SLABKIT_SANITIZE_H */
