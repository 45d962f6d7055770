/*
 * The tunables string: "name:key=value,key=value;name2:key=value".
 *
 * One parser for every reader: backend tunables applied when a cache of
 * that name is created (limit, batchcount, ...), and the `backend` key that
 * puts a cache, a UMA zone, a kmalloc or malloc(9) size class ("kmalloc-64")
 * or a whole front end ("kmalloc", "malloc") on a backend of its own.
 * The string is copied once at init and only read afterwards, so readers
 * need no lock.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sk_core.h"

/* One key=value pair of the entry for `name`. */
struct sk_tune_pair {
	const char *name;
	size_t name_len;
	const char *key;
	size_t key_len;
	const char *value;
	size_t value_len;
};

/*
 * Call fn for every key=value pair in the string, in order; stop when fn
 * returns non-zero and return that.  A pair without '=' is reported to fn
 * with value NULL, so that each reader decides how loudly to refuse it.
 */
static int tune_foreach(const char *s, int (*fn)(const struct sk_tune_pair *, void *), void *arg)
{
	if (!s)
		return 0;
	while (*s) {
		const char *end = strchr(s, ';');
		if (!end)
			end = s + strlen(s);
		const char *colon = memchr(s, ':', (size_t)(end - s));
		if (colon) {
			for (const char *kv = colon + 1; kv < end;) {
				const char *next = memchr(kv, ',', (size_t)(end - kv));
				if (!next)
					next = end;
				const char *eq = memchr(kv, '=', (size_t)(next - kv));
				struct sk_tune_pair p = {
					.name = s, .name_len = (size_t)(colon - s),
					.key = kv, .key_len = (size_t)((eq ? eq : next) - kv),
					.value = eq ? eq + 1 : NULL, .value_len = eq ? (size_t)(next - eq - 1) : 0,
				};
				int ret = fn(&p, arg);
				if (ret)
					return ret;
				kv = next + 1;
			}
		}
		s = *end ? end + 1 : end;
	}
	return 0;
}

static bool pair_is(const struct sk_tune_pair *p, const char *name, const char *key)
{
	return p->name_len == strlen(name) && !strncmp(p->name, name, p->name_len) &&
	       p->key_len == strlen(key) && !strncmp(p->key, key, p->key_len);
}

/* --- backend keys --- */

struct backend_lookup {
	const char *name;
	const struct sk_backend_ops *found;
};

static int find_backend_pair(const struct sk_tune_pair *p, void *arg)
{
	struct backend_lookup *l = arg;
	if (!pair_is(p, l->name, "backend") || !p->value)
		return 0;
	char value[SLABKIT_NAME_MAX];
	snprintf(value, sizeof(value), "%.*s", (int)p->value_len, p->value);
	l->found = sk_backend_find(value); /* the last entry for a name wins */
	return 0;
}

const struct sk_backend_ops *sk_tune_backend(const char *name)
{
	struct backend_lookup l = { name, NULL };
	tune_foreach(sk_state.tune, find_backend_pair, &l);
	return l.found;
}

static int check_backend_pair(const struct sk_tune_pair *p, void *arg)
{
	(void)arg;
	if (p->key_len != 7 || strncmp(p->key, "backend", 7))
		return 0;
	char value[SLABKIT_NAME_MAX];
	snprintf(value, sizeof(value), "%.*s", (int)p->value_len, p->value ? p->value : "");
	if (p->value && sk_backend_find(value))
		return 0;
	sk_errorf("slabkit: tunables: %.*s: backend '%s' is unknown or not compiled in; compiled in: %s",
		  (int)p->name_len, p->name, value, SLABKIT_COMPILED_BACKENDS);
	return -EINVAL;
}

int sk_tune_check_backends(const char *tune)
{
	return tune_foreach(tune, check_backend_pair, NULL);
}

/* --- backend tunables --- */

static int apply_pair(const struct sk_tune_pair *p, void *arg)
{
	struct sk_cache *c = arg;
	if (p->name_len != strlen(c->name) || strncmp(p->name, c->name, p->name_len))
		return 0;
	if (p->key_len == 7 && !strncmp(p->key, "backend", 7))
		return 0; /* chose the backend before the cache was made */
	if (p->key_len == 6 && !strncmp(p->key, "policy", 6))
		return 0; /* the node policy: read at creation (sk_cache_numa_setup) */
	char key[32], value[32], *end;
	if (!p->value || p->key_len >= sizeof(key) || p->value_len >= sizeof(value)) {
		sk_errorf("slabkit: bad tunable '%.*s' for cache %s", (int)p->key_len, p->key, c->name);
		return 0;
	}
	snprintf(key, sizeof(key), "%.*s", (int)p->key_len, p->key);
	snprintf(value, sizeof(value), "%.*s", (int)p->value_len, p->value);
	long v = strtol(value, &end, 10);
	if (*end || !*value || !c->ops->tune || c->ops->tune(c, key, v) != 0)
		sk_errorf("slabkit: cache %s (backend %s): cannot set %s=%s", c->name, c->ops->name, key,
			  value);
	return 0;
}

void sk_apply_tunables(struct sk_cache *c)
{
	tune_foreach(sk_state.tune, apply_pair, c);
}
