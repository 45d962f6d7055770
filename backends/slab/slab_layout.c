/*
 * SLAB backend: how a cache is laid out, how a slab is built and torn down,
 * and the per-node slab lists.
 *
 * A slab is 2^order pages from the page provider:
 *
 *   | colour | obj 0 | obj 1 | ... | obj num-1 | spare | index array |
 *
 * `colour` is a multiple of colour_off = max(cache line, align), chosen
 * round-robin per node among leftover / colour_off values, so that equal
 * objects of consecutive slabs fall on different cache lines.  The index
 * array (u8 or u16 per object, used as a stack of free indices with
 * `active` as its top) sits at the slab's end for small objects; objects of
 * SLAB_OFF_SLAB_MIN bytes and more keep it off the slab: inside the page
 * descriptor when it fits in 8 bytes, else in sk_meta_zalloc memory.
 *
 * Lock order (this file, in destroy):
 *   tune_lock -> slot lock (sk_pcpu_lock_cpu) -> node list_lock
 *   tune_lock -> alien lock -> node list_lock
 * bslab_grow runs with no lock held and bslab_destroy_list with at most
 * tune_lock (they call the page provider, the metadata allocator and the
 * cache's ctor/init/fini).
 */
#include <errno.h>

#include <ck_pr.h>

#include "slab_int.h"

/* --- layout --- */

struct slab_layout {
	uint32_t num, order, leftover, idx_bytes;
};

/* Objects of `size` in a slab of `slab_bytes`, with the index array on or
 * off the slab (Linux's cache_estimate). */
static void slab_estimate(size_t slab_bytes, size_t size, bool off_slab, struct slab_layout *out)
{
	size_t num;

	if (off_slab) {
		num = slab_bytes / size;
		out->idx_bytes = num <= 256 ? 1 : 2;
		out->leftover = (uint32_t)(slab_bytes - num * size);
	} else {
		num = slab_bytes / (size + 1);
		out->idx_bytes = 1;
		if (num > 256) {
			num = slab_bytes / (size + 2);
			out->idx_bytes = 2;
		}
		out->leftover = (uint32_t)(slab_bytes - num * (size + out->idx_bytes));
	}
	out->num = (uint32_t)num;
}

/*
 * Linux's calculate_slab_order: the smallest order whose waste is at most
 * 1/8 of the slab, but no larger than slab_max_order (1) unless even that
 * cannot hold one object, in which case the first order that can.
 */
static int slab_choose_order(size_t size, bool off_slab, struct slab_layout *out)
{
	bool found = false;

	for (unsigned order = 0; order <= SK_MAX_ORDER; order++) {
		size_t slab_bytes = SK_PAGE_SIZE << order;
		struct slab_layout l;

		slab_estimate(slab_bytes, size, off_slab, &l);
		if (l.num == 0)
			continue;
		if (l.num > 65536)   /* u16 indices */
			break;
		l.order = order;
		*out = l;
		found = true;
		if (order >= SLAB_MAX_ORDER_HI)
			break;
		if ((size_t)l.leftover * 8 <= slab_bytes)
			break;
	}
	return found ? 0 : -EINVAL;
}

/* Linux's enable_cpucache defaults, by object stride. */
static void slab_default_tunables(struct slab_cache *sc)
{
	uint32_t limit;

	if (sc->size > 131072)
		limit = 1;
	else if (sc->size > SK_PAGE_SIZE)
		limit = 8;
	else if (sc->size > 1024)
		limit = 24;
	else if (sc->size > 256)
		limit = 54;
	else
		limit = 120;
	sc->limit = limit;
	sc->batchcount = (limit + 1) / 2;
	sc->shared = (sc->size <= SK_PAGE_SIZE && sk_numa_cpus() > 1) ? 8 : 0;
	sc->alien_limit = limit > 1 ? SLAB_ALIEN_LIMIT : 1;
}

uint64_t bslab_free_limit(const struct slab_cache *sc, const struct slab_node *n)
{
	return (1 + (uint64_t)n->cpus) * sk_load((uint32_t *)&sc->batchcount) + sc->num;
}

struct slab_array *bslab_array_alloc(uint32_t capacity)
{
	struct slab_array *a = sk_meta_zalloc(sizeof(*a) + (size_t)capacity * sizeof(void *));

	if (a)
		a->limit = a->capacity = capacity;
	return a;
}

void bslab_array_free(struct slab_array *a)
{
	if (a)
		sk_meta_free(a, sizeof(*a) + (size_t)a->capacity * sizeof(void *));
}

static size_t slab_node_bytes(const struct slab_cache *sc)
{
	return sizeof(struct slab_node) + sc->nr_nodes * sizeof(struct slab_alien *);
}

static size_t slab_alien_bytes(void)
{
	return sizeof(struct slab_alien) + SLAB_ALIEN_LIMIT * sizeof(void *);
}

static struct slab_node *slab_node_create(struct slab_cache *sc, int id)
{
	/* On its own node: that node's CPUs take its list_lock. */
	struct slab_node *n = sk_meta_zalloc_node(slab_node_bytes(sc), id);

	if (!n)
		return NULL;
	pthread_mutex_init(&n->list_lock, NULL);
	sk_list_init(&n->slabs_full);
	sk_list_init(&n->slabs_partial);
	sk_list_init(&n->slabs_free);
	n->id = id;
	for (unsigned cpu = 0; cpu < sk_numa_cpus(); cpu++)
		if (sk_numa_cpu_node(cpu) == id)
			n->cpus++;
	n->free_limit = bslab_free_limit(sc, n);
	return n;
}

static int slab_node_populate(struct slab_cache *sc, struct slab_node *n)
{
	if (sc->shared) {
		n->shared = bslab_array_alloc(sc->shared * sc->batchcount);
		if (!n->shared)
			return -ENOMEM;
	}
	for (unsigned m = 0; m < sc->nr_nodes; m++) {
		struct slab_alien *al;

		if ((int)m == n->id)
			continue;
		al = sk_meta_zalloc_node(slab_alien_bytes(), n->id); /* filled by n's CPUs */
		if (!al)
			return -ENOMEM;
		pthread_mutex_init(&al->lock, NULL);
		al->ac.capacity = SLAB_ALIEN_LIMIT;
		al->ac.limit = sc->alien_limit;
		n->alien[m] = al;
	}
	return 0;
}

/* Free the backend structures (not the slabs). */
static void slab_state_free(struct slab_cache *sc)
{
	for (unsigned id = 0; id < sc->nr_nodes; id++) {
		struct slab_node *n = sc->node[id];

		if (!n)
			continue;
		for (unsigned m = 0; m < sc->nr_nodes; m++) {
			if (!n->alien[m])
				continue;
			pthread_mutex_destroy(&n->alien[m]->lock);
			sk_meta_free(n->alien[m], slab_alien_bytes());
		}
		bslab_array_free(n->shared);
		pthread_mutex_destroy(&n->list_lock);
		sk_meta_free(n, slab_node_bytes(sc));
	}
	pthread_mutex_destroy(&sc->tune_lock);
	sk_meta_free(sc, sizeof(*sc) + sc->nr_nodes * sizeof(struct slab_node *));
}

int bslab_cache_create(struct sk_cache *c)
{
	unsigned nr_nodes = sk_numa_nodes();
	size_t align = c->align < 8 ? 8 : c->align;
	size_t size = SK_ALIGN_UP(SK_MAX((size_t)c->object_size, (size_t)8), align);
	struct slab_layout l;
	struct slab_cache *sc;
	bool off_slab = size >= SLAB_OFF_SLAB_MIN;

	if (nr_nodes == 0)
		nr_nodes = 1;
	if (nr_nodes > SK_MAX_NODES)
		nr_nodes = SK_MAX_NODES;
	if (size > (SK_PAGE_SIZE << SK_MAX_ORDER) || slab_choose_order(size, off_slab, &l) != 0) {
		sk_message("slab: cache %s: objects of %zu bytes do not fit in a slab", c->name, size);
		return -EINVAL;
	}
	sc = sk_meta_zalloc(sizeof(*sc) + nr_nodes * sizeof(struct slab_node *));
	if (!sc)
		return -ENOMEM;
	pthread_mutex_init(&sc->tune_lock, NULL);
	sc->nr_nodes = nr_nodes;
	sc->size = (uint32_t)size;
	sc->num = l.num;
	sc->order = l.order;
	sc->slab_bytes = (uint32_t)(SK_PAGE_SIZE << l.order);
	sc->size_reciprocal = (uint32_t)(((1ull << 32) + size - 1) / size);
	sc->leftover = l.leftover;
	sc->idx_bytes = (uint8_t)l.idx_bytes;
	sc->freelist_bytes = l.num * l.idx_bytes;
	if (!off_slab)
		sc->freelist_where = SLAB_FREELIST_ON_SLAB;
	else if (sc->freelist_bytes <= sizeof(uintptr_t))
		sc->freelist_where = SLAB_FREELIST_IN_DESC;
	else
		sc->freelist_where = SLAB_FREELIST_META;
	sc->colour_off = (uint32_t)SK_MAX(sk_numa_cache_line(), align);
	sc->colour = sc->leftover / sc->colour_off;
	sc->nofree = (c->flags & SK_CACHE_NOFREE) != 0;
	sc->nobucket = (c->flags & SK_CACHE_NOBUCKET) != 0;
	slab_default_tunables(sc);
	sc->inline_capacity = sc->nobucket ? 0 : sc->limit;

	for (unsigned id = 0; id < nr_nodes; id++) {
		sc->node[id] = slab_node_create(sc, (int)id);
		if (!sc->node[id] || slab_node_populate(sc, sc->node[id]) != 0) {
			slab_state_free(sc);
			return -ENOMEM;
		}
	}
	c->size = sc->size;
	c->pcpu_extra = (uint32_t)(sizeof(struct slab_cpu) + sc->inline_capacity * sizeof(void *));
	c->backend = sc;
	return 0;
}

void bslab_pcpu_init(struct sk_cache *c, struct sk_pcpu_slot *slot, unsigned cpu)
{
	struct slab_cache *sc = slab_cache_of(c);
	struct slab_cpu *ex = slab_cpu_of(slot);
	int node = sk_numa_cpu_node(cpu);
	uint32_t limit = sk_load(&sc->limit);

	if (node < 0 || (unsigned)node >= sc->nr_nodes)
		node = 0;
	slot->tag = (uintptr_t)node + 1;
	ex->touched = 0;
	ex->external_capacity = 0;
	ex->reap_allocs_seen = 0;
	if (sc->nobucket) {
		slot->entries = NULL;
		slot->limit = 0;
		return;
	}
	slot->entries = ex->inline_entries;
	if (limit > sc->inline_capacity) {
		/* A tunable raised the limit before this slot existed. */
		void **entries = sk_meta_zalloc((size_t)limit * sizeof(void *));

		if (entries) {
			slot->entries = entries;
			ex->external_capacity = limit;
		} else {
			limit = sc->inline_capacity;
		}
	}
	slot->limit = limit;
}

/* --- growing and destroying slabs --- */

static void slab_destroy(struct sk_cache *c, struct slab_cache *sc, struct sk_page *pg)
{
	sk_slab_destruct(c, slab_s_mem(pg), sc->size, sc->num);
	if (sc->freelist_where == SLAB_FREELIST_META)
		sk_meta_free((void *)slab_desc(pg)->sd_freelist, sc->freelist_bytes);
	sk_slab_pages_free(c, sk_page_addr(pg));
}

void bslab_destroy_list(struct sk_cache *c, struct sk_list *list)
{
	struct slab_cache *sc = slab_cache_of(c);

	while (!sk_list_empty(list)) {
		struct sk_list *l = list->next;

		sk_list_del(l);
		slab_destroy(c, sc, slab_of_link(l));
	}
}

struct sk_page *bslab_grow(struct sk_cache *c, int node, unsigned flags)
{
	struct slab_cache *sc = slab_cache_of(c);
	char *addr = sk_slab_pages_alloc(c, node, sc->order);
	struct sk_page *pg;
	struct slab_node *n;
	uint32_t colour = 0;
	char *s_mem;
	void *fl;

	if (!addr)
		return NULL;
	pg = sk_page_of(addr);
	if (pg->node >= sc->nr_nodes) {
		sk_message("slab: cache %s: page of node %u beyond the %u nodes known at creation",
			   c->name, (unsigned)pg->node, sc->nr_nodes);
		sk_slab_pages_free(c, addr);
		return NULL;
	}
	n = sc->node[pg->node];
	if (sc->colour)
		colour = ck_pr_faa_32(&n->colour_next, 1) % sc->colour;
	/* SK_CACHE_ZINIT: sk_slab_pages_alloc has zeroed the slab already. */

	switch (sc->freelist_where) {
	case SLAB_FREELIST_ON_SLAB:
		fl = addr + sc->slab_bytes - sc->freelist_bytes;
		slab_desc(pg)->sd_freelist = (uintptr_t)fl;
		break;
	case SLAB_FREELIST_IN_DESC:
		slab_desc(pg)->sd_freelist = 0;
		fl = &slab_desc(pg)->sd_freelist;
		break;
	default:
		fl = sk_meta_zalloc(sc->freelist_bytes);
		if (!fl) {
			sk_slab_pages_free(c, addr);
			return NULL;
		}
		slab_desc(pg)->sd_freelist = (uintptr_t)fl;
		break;
	}
	slab_desc(pg)->sd_active = 0;
	slab_desc(pg)->sd_colour_off = colour * sc->colour_off;
	sk_list_init(slab_link_of(pg));
	for (uint32_t i = 0; i < sc->num; i++)
		slab_freelist_set(sc, fl, i, i);

	/* Linux's cache_init_objs: the ctor (or UMA init) runs once per object
	 * per slab lifetime, here, not on every allocation. */
	s_mem = slab_s_mem(pg);
	sk_slab_set_first_object(pg, s_mem);
	if (sk_slab_construct(c, s_mem, sc->size, sc->num, flags) != 0) {
		if (sc->freelist_where == SLAB_FREELIST_META)
			sk_meta_free(fl, sc->freelist_bytes);
		sk_slab_pages_free(c, addr);
		return NULL;
	}
	/* The colour before the objects, the leftover after them (up to an
	 * on-slab free-index array): no one's bytes. */
	char *tail = s_mem + (size_t)sc->num * sc->size;
	char *end = sc->freelist_where == SLAB_FREELIST_ON_SLAB ? (char *)fl : addr + sc->slab_bytes;
	sk_slab_unused(c, addr, (size_t)(s_mem - addr));
	sk_slab_unused(c, tail, end > tail ? (size_t)(end - tail) : 0);
	return pg;
}

/* --- node lists (caller holds n->list_lock) --- */

void bslab_attach(struct slab_cache *sc, struct slab_node *n, struct sk_page *pg)
{
	sk_list_add_tail(slab_link_of(pg), &n->slabs_free);
	n->free_slabs++;
	n->total_slabs++;
	n->free_objects += sc->num;
}

/* Refile a slab after objects left or came back. */
static void slab_refile(struct slab_cache *sc, struct slab_node *n, struct sk_page *pg)
{
	struct sk_list *l = slab_link_of(pg);

	sk_list_del(l);
	if (slab_active(pg) == sc->num)
		sk_list_add_head(l, &n->slabs_full);
	else
		sk_list_add_head(l, &n->slabs_partial);
}

uint32_t bslab_take_from(struct slab_cache *sc, struct slab_node *n, struct sk_page *pg,
			 void **out, uint32_t want)
{
	uint32_t active = slab_active(pg), got = 0;
	void *fl = slab_freelist(sc, pg);
	char *s_mem = slab_s_mem(pg);

	if (!want || active == sc->num)
		return 0;
	if (active == 0)
		n->free_slabs--;
	while (active < sc->num && got < want)
		out[got++] = s_mem + (size_t)slab_freelist_get(sc, fl, active++) * sc->size;
	slab_set_active(pg, active);
	n->free_objects -= got;
	slab_refile(sc, n, pg);
	return got;
}

uint32_t bslab_take_objects(struct slab_cache *sc, struct slab_node *n, void **out, uint32_t want)
{
	uint32_t got = 0;

	while (got < want) {
		struct sk_list *l;

		/* Partial slabs first: fill what is started before breaking into
		 * an empty slab that could otherwise go back. */
		if (!sk_list_empty(&n->slabs_partial)) {
			l = n->slabs_partial.next;
		} else {
			n->free_touched = true;
			if (sk_list_empty(&n->slabs_free))
				break;
			l = n->slabs_free.next;
		}
		got += bslab_take_from(sc, n, slab_of_link(l), out + got, want - got);
	}
	return got;
}

/* Give one object back to its slab; false (reported through core's misuse
 * policy, the count taken back) if obj is not an object of this cache out
 * of its slab.  The free-index array's head, entry `active`, is the object
 * freed last: freeing it again is a double free (the hardened freelist's
 * check, as SLUB's on its slab's free list). */
static bool slab_put_obj(struct sk_cache *c, struct slab_cache *sc, struct slab_node *n,
			 struct sk_page *pg, void *obj)
{
	uintptr_t off = (uintptr_t)obj - (uintptr_t)slab_s_mem(pg);
	uint32_t active = slab_active(pg);
	uint32_t idx;

	if (off >= (uintptr_t)sc->num * sc->size) {
		sk_free_misuse(NULL, c, SK_MISUSE_INTERIOR, obj, "outside the objects of its slab");
		goto bad;
	}
	idx = slab_offset_to_index(sc, (uint32_t)off);
	if ((uintptr_t)idx * sc->size != off) {
		sk_free_misuse(NULL, c, SK_MISUSE_INTERIOR, obj, "not the start of an object");
		goto bad;
	}
	if (active == 0 || (active < sc->num && slab_freelist_get(sc, slab_freelist(sc, pg), active) == idx)) {
		sk_free_misuse(NULL, c, SK_MISUSE_DOUBLE_FREE, obj,
			       active ? "it is the object its slab freed last" : "its slab has no object in use");
		goto bad;
	}
	slab_set_active(pg, --active);
	slab_freelist_set(sc, slab_freelist(sc, pg), active, idx);
	return true;
bad:
	sk_cache_free_refused(c, obj);
	return false;
}

void bslab_free_block(struct sk_cache *c, struct slab_node *n, void **objs, uint32_t nr,
		      struct sk_list *destroy)
{
	struct slab_cache *sc = slab_cache_of(c);

	for (uint32_t i = 0; i < nr; i++) {
		struct sk_page *pg = sk_page_of(objs[i]);
		struct sk_list *l;

		if (!pg || pg->kind != SK_PAGE_SLAB || pg->owner != c || pg->node != n->id) {
			sk_free_misuse(NULL, c, pg && pg->kind == SK_PAGE_SLAB ? SK_MISUSE_WRONG_CACHE : SK_MISUSE_FOREIGN,
				       objs[i], "not an object of this cache on node %d", n->id);
			sk_cache_free_refused(c, objs[i]);
			continue;
		}
		if (!slab_put_obj(c, sc, n, pg, objs[i]))
			continue;
		n->free_objects++;
		l = slab_link_of(pg);
		sk_list_del(l);
		if (slab_active(pg) == 0) {
			sk_list_add_head(l, &n->slabs_free);
			n->free_slabs++;
		} else {
			/* The tail of the partial list: the most time for its
			 * other objects to come back too. */
			sk_list_add_tail(l, &n->slabs_partial);
		}
	}
	if (sc->nofree)
		return;
	while (n->free_objects > n->free_limit && n->free_slabs > 0)
		bslab_detach_free(sc, n, 1, destroy);
}

uint64_t bslab_detach_free(struct slab_cache *sc, struct slab_node *n, uint64_t max,
			   struct sk_list *destroy)
{
	uint64_t done = 0;

	/* The coldest first: free_block adds newly emptied slabs at the head. */
	while (done < max && !sk_list_empty(&n->slabs_free)) {
		struct sk_list *l = n->slabs_free.prev;

		sk_list_del(l);
		sk_list_add_head(l, destroy);
		n->free_slabs--;
		n->total_slabs--;
		n->free_objects -= sc->num;
		done++;
	}
	return done;
}

/* --- destroy --- */

void bslab_cache_destroy(struct sk_cache *c)
{
	struct slab_cache *sc = slab_cache_of(c);
	struct sk_list destroy;

	if (!sc)
		return;
	sk_list_init(&destroy);
	pthread_mutex_lock(&sc->tune_lock);
	/* Nothing is in use and nobody else may touch the cache now, and core
	 * drained every array just before; a slot that still holds objects is
	 * flushed under its lock all the same. */
	if (c->pcpu_base) {
		for (unsigned cpu = 0; cpu < sk_pcpu_nr; cpu++) {
			struct sk_pcpu_slot *slot = sk_pcpu_slot(c, cpu);
			struct slab_cpu *ex = slab_cpu_of(slot);

			if (!slab_slot_ready(slot))
				continue;
			if (slab_slot_top(slot)) {
				slot = sk_pcpu_lock_cpu(c, cpu);
				bslab_flush_slot(c, slot, &destroy);
				sk_pcpu_unlock(slot);
			}
			if (ex->external_capacity)
				sk_meta_free(slot->entries, (size_t)ex->external_capacity * sizeof(void *));
			ex->external_capacity = 0;
			slot->entries = NULL;
			slot->limit = 0;
		}
	}
	for (unsigned id = 0; id < sc->nr_nodes; id++) {
		struct slab_node *n = sc->node[id];

		for (unsigned m = 0; m < sc->nr_nodes; m++) {
			struct slab_alien *al = n->alien[m];

			if (!al)
				continue;
			pthread_mutex_lock(&al->lock);
			bslab_drain_alien_locked(c, al, (int)m, &destroy);
			pthread_mutex_unlock(&al->lock);
		}
	}
	for (unsigned id = 0; id < sc->nr_nodes; id++) {
		struct slab_node *n = sc->node[id];
		uint64_t busy = 0;

		pthread_mutex_lock(&n->list_lock);
		if (n->shared) {
			bslab_free_block(c, n, n->shared->entry, n->shared->avail, &destroy);
			n->shared->avail = 0;
		}
		bslab_detach_free(sc, n, UINT64_MAX, &destroy);
		/* Core destroys only caches with nothing in use; slabs still on
		 * the other lists would mean lost objects.  Free them anyway. */
		while (!sk_list_empty(&n->slabs_partial) || !sk_list_empty(&n->slabs_full)) {
			struct sk_list *l = !sk_list_empty(&n->slabs_partial) ? n->slabs_partial.next
										 : n->slabs_full.next;
			sk_list_del(l);
			sk_list_add_head(l, &destroy);
			n->total_slabs--;
			busy++;
		}
		pthread_mutex_unlock(&n->list_lock);
		if (busy)
			sk_message("slab: cache %s: %llu slab(s) on node %d still had objects out at destroy",
				   c->name, (unsigned long long)busy, (int)id);
	}
	bslab_destroy_list(c, &destroy);
	pthread_mutex_unlock(&sc->tune_lock);
	c->backend = NULL;
	slab_state_free(sc);
}
