/*
 * Compiler helpers used across slabkit.  common/ is the floor of the house:
 * numa/ and core/ both include it, and it includes nothing of slabkit, so
 * the page provider keeps depending on nothing above it.
 */
#ifndef SLABKIT_COMPILER_H
#define SLABKIT_COMPILER_H

#define sk_likely(x) __builtin_expect(!!(x), 1)
#define sk_unlikely(x) __builtin_expect(!!(x), 0)
#define sk_noinline __attribute__((noinline))
#define sk_cold __attribute__((cold, noinline))
#define sk_always_inline inline __attribute__((always_inline))
#define SK_EXPORT __attribute__((visibility("default")))
#define SK_ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define SK_IS_POW2(x) ((x) != 0 && ((x) & ((x) - 1)) == 0)
#define SK_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define SK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SK_MAX(a, b) ((a) > (b) ? (a) : (b))


/*
 * Loads and stores of words other threads change concurrently.  On x86
 * these are the plain moves ck_pr_load/ck_pr_store are; they are spelled
 * with the compiler's atomics so that ThreadSanitizer sees them as atomic
 * (ck's builtin port, used in TSan builds, makes them volatile accesses).
 * Read-modify-write operations use ck_pr.
 */
#define sk_load(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define sk_store(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define sk_load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define sk_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* Fences for sequence counters (compiler barriers on x86).  TSan does not
 * model fences and warns about them; it only needs every access they order
 * to be atomic, which sk_load/sk_store are, so TSan builds leave them out. */
#ifdef SLABKIT_TSAN
#define sk_fence_release() ((void)0)
#define sk_fence_acquire() ((void)0)
#else
#define sk_fence_release() __atomic_thread_fence(__ATOMIC_RELEASE)
#define sk_fence_acquire() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#endif

#endif
