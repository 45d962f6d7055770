/*
 * Pointer stacks: an array of object pointers and a count, the most
 * recently pushed (hottest) on top, entry[count - 1].  Core's array slots
 * (SK_PCPU_ARRAY: SLAB's per-CPU arrays, UMA's alloc bucket, SLUB's
 * sheaf), SLAB's shared and alien arrays and UMA's buckets are all such
 * stacks; these are the moves between them, written once.
 *
 * Nothing here locks or publishes: the caller holds whatever guards the
 * stacks and stores the counts itself where others read them without the
 * lock (sk_store), or through the slot's packed top word.
 */
#ifndef SLABKIT_STACK_H
#define SLABKIT_STACK_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static inline void sk_stack_push(void **stack, uint32_t *count, void *obj)
{
	stack[(*count)++] = obj;
}

/* The caller has checked the stack is not empty. */
static inline void *sk_stack_pop(void **stack, uint32_t *count)
{
	return stack[--*count];
}

/* Is obj the top entry?  Pushing it again would be a double free (the
 * fast paths' and the slow paths' check). */
static inline bool sk_stack_is_top(void *const *stack, uint32_t count, const void *obj)
{
	return count && stack[count - 1] == obj;
}

/* Copy n entries from `from` onto the top of a stack holding `count`,
 * in their order (the last one ends on top).  The caller adds n to the
 * count, and takes them off `from` (the top n of a stack, or the oldest n
 * with sk_stack_drop_oldest). */
static inline void sk_stack_append(void **stack, uint32_t count, void *const *from, uint32_t n)
{
	memcpy(stack + count, from, (size_t)n * sizeof(void *));
}

/* Remove the n oldest entries (the bottom) of a stack of `count`, the
 * others sliding down in order; the caller subtracts n from the count. */
static inline void sk_stack_drop_oldest(void **stack, uint32_t count, uint32_t n)
{
	memmove(stack, stack + n, (size_t)(count - n) * sizeof(void *));
}

#endif
