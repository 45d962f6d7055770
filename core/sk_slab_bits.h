/*
 * A slab's free-item bitset: bit i set means item i (at first + i * stride)
 * is free.  The one bitset of slabkit's two kegs: UMA's
 * (backends/uma/uma_keg.c; the bitset in the slab's head page descriptor,
 * at the slab's end or off the slab) and core's keg for zones no backend
 * can lay out (core/uma_skeg.c).  Only the bits live here; where the words
 * are, which lock guards them and how a slab is found from an item stay
 * with each keg.
 *
 * What must stay true: the bits past the slab's items are clear (fill sets
 * only item bits, take never sets, put refuses an index past the items),
 * so a word's set bits are free items and nothing else.  Nothing here
 * locks: the keg serialises every access to a slab's words.
 *
 * Not Concurrency Kit's ck_bitmap, which the issue suggested: its
 * ck_bitmap_set and ck_bitmap_reset are atomic read-modify-writes
 * (ck_pr_or_uint, ck_pr_and_uint: a lock-prefixed instruction per bit on
 * x86-64), where both kegs change bits under a lock they already hold; its
 * bitmap carries an n_bits header before 32-bit words, so a one-word bitset
 * of up to 64 items would no longer fit UMA's descriptor word (us_bits);
 * and taking many items means finding and resetting them one bit at a time,
 * where sk_slab_bits_take clears a word's taken bits with one store.
 */
#ifndef SLABKIT_SLAB_BITS_H
#define SLABKIT_SLAB_BITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uintptr_t sk_bitword_t;
#define SK_BITWORD_BITS ((unsigned)(8 * sizeof(sk_bitword_t)))

/* Words and bytes of the bitset of a slab of `items` items. */
static inline uint32_t sk_slab_bits_words(uint32_t items)
{
	return (items + SK_BITWORD_BITS - 1) / SK_BITWORD_BITS;
}

static inline size_t sk_slab_bits_bytes(uint32_t items)
{
	return (size_t)sk_slab_bits_words(items) * sizeof(sk_bitword_t);
}

/* Every item free, the bits past them clear. */
static inline void sk_slab_bits_fill(sk_bitword_t *bits, uint32_t items)
{
	for (uint32_t w = 0; w < sk_slab_bits_words(items); w++) {
		uint32_t left = items - w * SK_BITWORD_BITS;
		bits[w] = left >= SK_BITWORD_BITS ? ~(sk_bitword_t)0 : ((sk_bitword_t)1 << left) - 1;
	}
}

/* Take up to `max` free items, lowest first, storing their addresses in
 * store[]; `nfree` (the slab's free count) ends the scan early once that
 * many are taken.  Returns how many were taken. */
static inline uint32_t sk_slab_bits_take(sk_bitword_t *bits, uint32_t words, uint32_t nfree, char *first,
					 size_t stride, void **store, uint32_t max)
{
	uint32_t n = 0;

	for (uint32_t w = 0; w < words && n < max && n < nfree; w++) {
		sk_bitword_t word = bits[w];

		if (!word)
			continue;
		while (word && n < max) {
			unsigned bit = (unsigned)__builtin_ctzl(word);

			word &= word - 1;
			store[n++] = first + ((size_t)w * SK_BITWORD_BITS + bit) * stride;
		}
		bits[w] = word;
	}
	return n;
}

/* The index of the item that starts at `item` in a slab of `items` items
 * of `stride` bytes from `first`; -1 when `item` is no item's start there. */
static inline long sk_slab_bits_index(const char *first, size_t stride, uint32_t items, const void *item)
{
	/* An item below `first` wraps to an offset far past any slab. */
	size_t off = (size_t)((uintptr_t)item - (uintptr_t)first);

	if (off % stride != 0 || off / stride >= items)
		return -1;
	return (long)(off / stride);
}

static inline bool sk_slab_bits_test(const sk_bitword_t *bits, size_t i)
{
	return (bits[i / SK_BITWORD_BITS] >> (i % SK_BITWORD_BITS)) & 1;
}

/* Mark item i free; false, and nothing changed, when it already was (a
 * double free). */
static inline bool sk_slab_bits_put(sk_bitword_t *bits, size_t i)
{
	sk_bitword_t *word = &bits[i / SK_BITWORD_BITS];
	sk_bitword_t mask = (sk_bitword_t)1 << (i % SK_BITWORD_BITS);

	if (*word & mask)
		return false;
	*word |= mask;
	return true;
}

/* For validation: the free items the bits say, and in *past the bits set
 * beyond the slab's items (corruption). */
static inline uint32_t sk_slab_bits_count(const sk_bitword_t *bits, uint32_t items, uint32_t *past)
{
	uint32_t set = 0;

	*past = 0;
	for (uint32_t w = 0; w < sk_slab_bits_words(items); w++) {
		sk_bitword_t word = bits[w];
		uint32_t valid = items - w * SK_BITWORD_BITS;

		if (valid < SK_BITWORD_BITS) {
			*past += (uint32_t)__builtin_popcountl(word >> valid);
			word &= ((sk_bitword_t)1 << valid) - 1;
		}
		set += (uint32_t)__builtin_popcountl(word);
	}
	return set;
}

#endif
