/*
 * The one intrusive list of slabkit: circular, doubly linked, with a
 * sentinel head (the shape of Linux's list_head, which SLAB's slab lists
 * had).  Used by the buddy allocator's free lists (numa/buddy.c), SLAB's,
 * SLUB's and UMA's slab lists, and core's metadata pages.  Every operation
 * is O(1); removal needs only the element, insertion works at either end.
 * An element on no list may sit on a chain meanwhile (sk_chain_*, below):
 * a singly linked stack through its prev word.
 *
 * What must stay true: a head is initialised (sk_list_init) before use; an
 * element is on at most one list; sk_list_del leaves the element linked to
 * itself, so sk_list_linked() tells whether it is on a list.  Nothing here
 * locks: the owner of the list serialises every access to its links.
 *
 * Lists threaded through page descriptors keep the link in the words the
 * page's owner names (struct sk_page's bk[] storage, viewed through the
 * owner's struct), so the view types are declared may_alias.
 */
#ifndef SLABKIT_LIST_H
#define SLABKIT_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct sk_list {
	struct sk_list *next, *prev;
} __attribute__((may_alias));

#define sk_container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static inline void sk_list_init(struct sk_list *head)
{
	head->next = head->prev = head;
}

static inline bool sk_list_empty(const struct sk_list *head)
{
	return head->next == head;
}

/* An element is linked while it is on a list (after sk_list_init or
 * sk_list_del it points at itself). */
static inline bool sk_list_linked(const struct sk_list *l)
{
	return l->next != l;
}

static inline void sk_list_link_between(struct sk_list *l, struct sk_list *prev,
					struct sk_list *next)
{
	l->prev = prev;
	l->next = next;
	prev->next = l;
	next->prev = l;
}

static inline void sk_list_add_head(struct sk_list *l, struct sk_list *head)
{
	sk_list_link_between(l, head, head->next);
}

static inline void sk_list_add_tail(struct sk_list *l, struct sk_list *head)
{
	sk_list_link_between(l, head->prev, head);
}

static inline void sk_list_del(struct sk_list *l)
{
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->next = l->prev = l;
}

/* Move every element of `from` (in order) onto the empty list `to`;
 * `from` ends empty.  O(1). */
static inline void sk_list_take_all(struct sk_list *to, struct sk_list *from)
{
	if (sk_list_empty(from)) {
		sk_list_init(to);
		return;
	}
	to->next = from->next;
	to->prev = from->prev;
	to->next->prev = to;
	to->prev->next = to;
	sk_list_init(from);
}

/* First and last element, or NULL on an empty list. */
static inline struct sk_list *sk_list_first(const struct sk_list *head)
{
	return sk_list_empty(head) ? NULL : head->next;
}

static inline struct sk_list *sk_list_last(const struct sk_list *head)
{
	return sk_list_empty(head) ? NULL : head->prev;
}

/* Walk the elements; _safe lets the body take `pos` off the list. */
#define sk_list_for_each(pos, head) \
	for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)
#define sk_list_for_each_safe(pos, tmp, head) \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
	     (pos) = (tmp), (tmp) = (pos)->next)

/*
 * A chain: a singly linked stack of elements that are on no list,
 * threaded through their prev word (Linux's SLUB keeps its per-CPU
 * partial slabs the same way, in the storage of the slab's list_head).
 * `top` is the first element's link, NULL for an empty chain.
 *
 * What must stay true: only an unlinked element (sk_list_linked() false)
 * is pushed, and it is taken off its chain before it is put on a list.
 * The element's next word is never touched, so sk_list_linked() keeps
 * answering "on no list" while the element moves along chains: whoever
 * asks under the list's lock needs nothing from the chain's owner (SLUB's
 * freers test "on the node partial list" under list_lock while a CPU holds
 * the slab on its partial chain under its slot lock alone).
 */
static inline void sk_chain_push(struct sk_list **top, struct sk_list *l)
{
	l->prev = *top;
	*top = l;
}

/* The element after l on its chain, or NULL. */
static inline struct sk_list *sk_chain_next(const struct sk_list *l)
{
	return l->prev;
}

/* Take the element `*at` off its chain (`at`: the chain's top, or the
 * prev word of the element before it) and return it, unlinked again
 * (pointing at itself); NULL if `*at` is NULL.  sk_chain_take(&top) pops. */
static inline struct sk_list *sk_chain_take(struct sk_list **at)
{
	struct sk_list *l = *at;

	if (l) {
		*at = l->prev;
		l->prev = l;
	}
	return l;
}

#endif
