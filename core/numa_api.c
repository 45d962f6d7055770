/*
 * The public NUMA calls of <slabkit/slabkit.h>: which node holds a
 * pointer, node numbers in the OS's terms, per-node figures.  Everything
 * here reads the page provider (numa/), which keeps the arenas, the
 * OS-number mapping and the counters; this file only translates.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <slabkit/slabkit.h>

#include "sk_core.h"

_Static_assert(SLABKIT_PAGE_ORDERS == SK_MAX_ORDER + 1, "one figure per buddy order");

int sk_node_from_user(int os_node)
{
	if (os_node == -1)
		return SK_NODE_ANY;
	int node = sk_numa_node_from_os(os_node);
	return node < 0 ? SK_NODE_INVALID : node;
}

const char *sk_node_list(char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = '\0';
	for (unsigned n = 0; n < sk_numa_nodes() && used < len; n++) {
		int w = snprintf(buf + used, len - used, "%s%d", n ? "," : "", sk_numa_node_os((int)n));
		if (w < 0)
			break;
		used += (size_t)w;
	}
	return buf;
}

SK_EXPORT int slabkit_ptr_node(const void *p)
{
	/* No init needed: before init the arenas are empty and nothing is ours. */
	return sk_node_to_user(sk_numa_addr_node(p));
}

SK_EXPORT int slabkit_node_os(int node)
{
	sk_ensure_init();
	return sk_numa_node_os(node);
}

SK_EXPORT int slabkit_node_from_os(int os_node)
{
	sk_ensure_init();
	return sk_numa_node_from_os(os_node);
}

SK_EXPORT int slabkit_node_stats(int os_node, struct slabkit_node_stats *out)
{
	struct sk_numa_node_stats ns;

	memset(out, 0, sizeof(*out));
	sk_ensure_init();
	int node = sk_node_from_user(os_node);
	if (node < 0 || sk_numa_node_stats(node, &ns) != 0)
		return -EINVAL;
	out->node = node;
	out->os_node = sk_numa_node_os(node);
	out->memory_bytes = sk_numa_node_memory(node);
	out->bytes_reserved = ns.pages_reserved << SK_PAGE_SHIFT;
	out->bytes_in_use = ns.pages_in_use << SK_PAGE_SHIFT;
	out->bytes_committed = (ns.pages_in_use + ns.pages_free_dirty) << SK_PAGE_SHIFT;
	out->bytes_returned = ns.pages_released << SK_PAGE_SHIFT;
	out->madvise_calls = ns.madvise_calls;
	out->page_allocs = ns.alloc_calls;
	out->directed_hits = ns.directed_hits;
	out->directed_misses = ns.directed_misses;
	memcpy(out->used_blocks, ns.used_blocks, sizeof(out->used_blocks));
	memcpy(out->free_blocks, ns.free_blocks, sizeof(out->free_blocks));
	return 0;
}

/* --- node policies of caches --- */

/* The value of `key` in the tunables entry of cache `name`
 * ("name:k=v,k=v;name2:..."), copied into buf; false when absent. */
static bool tune_value(const char *tune, const char *name, const char *key, char *buf,
		       size_t len)
{
	size_t nlen = strlen(name), klen = strlen(key);

	for (const char *s = tune; s && *s;) {
		const char *end = strchr(s, ';');
		if (!end)
			end = s + strlen(s);
		if ((size_t)(end - s) > nlen && !strncmp(s, name, nlen) && s[nlen] == ':') {
			for (const char *kv = s + nlen + 1; kv < end;) {
				const char *next = memchr(kv, ',', (size_t)(end - kv));
				if (!next)
					next = end;
				if ((size_t)(next - kv) > klen && !strncmp(kv, key, klen) && kv[klen] == '=') {
					size_t vlen = (size_t)(next - kv) - klen - 1;
					if (vlen >= len)
						vlen = len - 1;
					memcpy(buf, kv + klen + 1, vlen);
					buf[vlen] = '\0';
					return true;
				}
				kv = next + 1;
			}
		}
		s = *end ? end + 1 : end;
	}
	return false;
}

/*
 * Which node a request naming none goes to, decided once per cache:
 *  - "name:policy=..." in the tunables (config `tune` or $SLABKIT_TUNE);
 *  - else UMA_ZONE_ROUNDROBIN (interleave) or UMA_ZONE_FIRSTTOUCH (local);
 *  - else the process's policy (config `numa_policy` or $SLABKIT_NUMA_POLICY).
 * Local needs nothing: every backend starts on the caller's node.
 * Preferred and bind steer core's slow path to the node (the per-CPU
 * layer then only ever holds that node's objects, as every backend keeps
 * other nodes' objects out of it).  Interleave is spread by the backend
 * itself where it can (SK_CAP_ROUNDROBIN: UMA's round-robin kegs), else one
 * object at a time by core's slow path, without the per-CPU layer (as
 * Linux SLAB's alternate_node_alloc does: every allocation takes the next
 * node, which a per-CPU cache of one node's objects would defeat).
 */
int sk_cache_numa_setup(struct sk_cache *c)
{
	struct sk_numa_policy pol = { .kind = SK_POLICY_DEFAULT };
	char text[64];

	if (tune_value(sk_state.tune, c->name, "policy", text, sizeof(text))) {
		const char *why;
		if (sk_numa_policy_parse(text, &pol, &why) != 0) {
			sk_errorf("slabkit: cache %s: node policy '%s' %s", c->name, text, why);
			return -EINVAL;
		}
	} else if (c->flags & SK_CACHE_ROUNDROBIN) {
		pol.kind = SK_POLICY_INTERLEAVE;
	} else if (c->flags & SK_CACHE_FIRSTTOUCH) {
		pol.kind = SK_POLICY_LOCAL;
	}
	pol = sk_numa_policy_resolve(pol);
	if (sk_numa_nodes() < 2)
		pol = (struct sk_numa_policy){ .kind = SK_POLICY_LOCAL };
	c->numa_policy = pol;
	c->numa_policy.cursor = 0;
	c->numa_steer = pol.kind == SK_POLICY_PREFERRED || pol.kind == SK_POLICY_BIND;
	if (pol.kind == SK_POLICY_INTERLEAVE) {
		if (c->ops->caps & SK_CAP_ROUNDROBIN) {
			c->flags |= SK_CACHE_ROUNDROBIN;
		} else {
			c->flags |= SK_CACHE_NOBUCKET;
			c->numa_steer = true;
		}
	}
	return 0;
}

SK_EXPORT const char *slabkit_numa_policy(char *buf, size_t len)
{
	sk_ensure_init();
	return sk_numa_policy_name(sk_numa_process_policy(), buf, len);
}

SK_EXPORT int slabkit_cache_numa_policy(const char *cache_name, char *buf, size_t len)
{
	sk_ensure_init();
	pthread_mutex_lock(&sk_state.registry_lock);
	struct sk_cache *c = sk_state.first;
	while (c && (c->dead || strcmp(c->name, cache_name)))
		c = c->next;
	if (c)
		sk_numa_policy_name(c->numa_policy, buf, len);
	pthread_mutex_unlock(&sk_state.registry_lock);
	return c ? 0 : -ENOENT;
}
