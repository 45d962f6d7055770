/*
 * fork() safety: pthread_atfork handlers that take every lock of the
 * library before fork() and release them after it, in the parent and in
 * the child, so that the child (which has only the forking thread) never
 * inherits a lock some vanished thread held, nor a structure half changed.
 *
 * Lock order (the whole library's, sk_core.h; taken top to bottom here):
 *   liburcu: its call_rcu worker paused (only once slabkit has used RCU)
 *   -> init_lock
 *   -> publish_lock (the live view's snapshot writer)
 *   -> the libc front end's init lock (libc_malloc.c)
 *   -> zones_lock (reports hold it while reading caches)
 *   -> backend_lock (held around a backend's init)
 *   -> registry_lock
 *   -> backend locks of level 0 (SLAB's tune_lock), every cache
 *   -> every slot lock of every cache
 *   -> backend locks of levels 1 and 2, every cache; then the backend's
 *      global locks (SLOB's heap lock)
 *   -> every UMA zone's limit lock
 *   -> the malloc-type list lock
 *   -> the allocation tracker's table and stripe locks, the trace lock
 *   -> the libc front end's large-block lock
 *   -> the metadata lock
 *   -> the page provider's arena locks
 * Each is held by others only while they take locks further down, never
 * further up, so taking them all in this order cannot deadlock.
 *
 * The child also starts the maintenance thread again (threads do not
 * survive fork); a fork before slabkit is initialised takes only the
 * locks that exist then.
 */
#include <pthread.h>

#include "sk_core.h"

static bool fork_had_state; /* written by prepare, read by parent/child */

static void fork_backend(bool lock, unsigned level)
{
	for (struct sk_cache *c = sk_state.first; c; c = c->next)
		if (c->ops->fork_lock)
			c->ops->fork_lock(c, level, lock);
}

static void fork_prepare(void)
{
	sk_rcu_fork_prepare(); /* liburcu first: its worker runs our frees */
	sk_init_fork_lock(true);
	sk_publish_fork(true, false);
	sk_libc_fork_lock(true, false);
	sk_uma_fork_lock(true, false);
	sk_backends_fork_lock(true);
	fork_had_state = sk_state.ready;
	if (fork_had_state) {
		pthread_mutex_lock(&sk_state.registry_lock);
		fork_backend(true, 0);
		for (struct sk_cache *c = sk_state.first; c; c = c->next)
			sk_pcpu_fork_lock(c, true);
		for (unsigned level = 1; level < SK_FORK_LEVELS; level++)
			fork_backend(true, level);
		sk_backends_fork_global(true);
	}
	sk_uma_fork_lock(true, true);
	sk_malloc_types_fork_lock(true);
	sk_track_fork_lock(true);
	sk_trace_fork_lock(true);
	sk_libc_fork_lock(true, true);
	sk_meta_fork_lock(true);
	sk_pcpu_area_fork_lock(true);
	if (fork_had_state)
		sk_numa_fork_lock(true);
}

static void fork_release(bool child)
{
	if (fork_had_state)
		sk_numa_fork_lock(false);
	sk_pcpu_area_fork_lock(false);
	sk_meta_fork_lock(false);
	sk_libc_fork_lock(false, true);
	sk_trace_fork_lock(false);
	sk_track_fork_lock(false);
	sk_malloc_types_fork_lock(false);
	sk_uma_fork_lock(false, true);
	if (fork_had_state) {
		sk_backends_fork_global(false);
		for (unsigned level = SK_FORK_LEVELS; level-- > 1;)
			fork_backend(false, level);
		for (struct sk_cache *c = sk_state.first; c; c = c->next)
			sk_pcpu_fork_lock(c, false);
		fork_backend(false, 0);
		pthread_mutex_unlock(&sk_state.registry_lock);
	}
	sk_backends_fork_lock(false);
	sk_uma_fork_lock(false, false);
	sk_libc_fork_lock(false, false);
	sk_publish_fork(false, child);
	sk_init_fork_lock(false);
}

static void fork_parent(void)
{
	fork_release(false);
	sk_rcu_fork_parent();
}

static void fork_child(void)
{
	fork_release(true);
	sk_rcu_fork_child();
	sk_fork_child_restart_tick();
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_register_once(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

void sk_fork_register(void)
{
	pthread_once(&fork_once, fork_register_once);
}
