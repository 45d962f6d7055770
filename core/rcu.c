/*
 * RCU for slabkit: kfree_rcu, SLAB_TYPESAFE_BY_RCU slab pages, UMA SMR
 * zones and rcu_barrier, all over one grace-period machinery: liburcu's
 * "memb" flavour (urcu-memb) and its call_rcu worker.
 *
 * Why urcu-memb: readers are a thread-local counter update with compiler
 * barriers only (the writer side pays with membarrier(2)), no signals are
 * taken from the application (urcu-signal would), and no quiescent-state
 * announcements are asked of every thread (urcu-qsbr would).  call_rcu
 * gives one worker thread that batches callbacks, and rcu_barrier waits for
 * every callback queued before it, which is what kmem_cache_destroy needs.
 * ck_epoch would work too, but its records and polling would be ours to
 * drive; liburcu is already a dependency and does both.
 *
 * Threads: call_rcu and rcu_read_lock need the calling thread registered
 * with liburcu.  slabkit registers a thread the first time it uses any of
 * them (and unregisters it when the thread exits, through a pthread key).
 * The worker is started by sk_rcu_start, at the first use of RCU (the
 * first kfree_rcu, or the creation of a TYPESAFE_BY_RCU cache or an SMR
 * zone), never from inside a free path, so that liburcu's own allocations
 * (its worker and queue) happen before any allocator lock is held.
 *
 * Lock order: liburcu's locks are taken by call_rcu and the barrier with
 * slabkit locks possibly held (a TYPESAFE slab freed under a backend lock);
 * the worker runs callbacks (which take slabkit locks) holding none of
 * liburcu's.  fork(): core/fork.c stops the worker and takes liburcu's
 * locks before any of slabkit's.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdbool.h>

#include <urcu/urcu-memb.h>
#include <urcu/call-rcu.h>

#include "sk_core.h"

/* The heads slabkit hands to call_rcu are two words inside something of
 * its own (the public struct rcu_head of <slabkit/linux/slab.h>, a page
 * descriptor, a batch): liburcu's struct rcu_head, which this file alone
 * sees (sk_core.h passes them as void *). */
_Static_assert(sizeof(struct rcu_head) == 2 * sizeof(void *), "liburcu's rcu_head is two words");

static pthread_once_t rcu_once = PTHREAD_ONCE_INIT;
static pthread_key_t rcu_thread_key;
static bool rcu_started;            /* Synchronization: rcu_once, then read-only */
static pthread_t rcu_worker;        /* liburcu registers it itself; callbacks run there */
static __thread bool rcu_registered __attribute__((tls_model("initial-exec")));

static void rcu_thread_exit(void *arg)
{
	(void)arg;
	if (rcu_registered && !pthread_equal(pthread_self(), rcu_worker)) {
		urcu_memb_unregister_thread();
		rcu_registered = false;
	}
}

static void rcu_start_once(void)
{
	pthread_key_create(&rcu_thread_key, rcu_thread_exit);
	/* The default worker now, while no allocator lock is held. */
	rcu_worker = urcu_memb_get_call_rcu_thread(urcu_memb_get_default_call_rcu_data());
	sk_store_release(&rcu_started, true);
}

void sk_rcu_start(void)
{
	pthread_once(&rcu_once, rcu_start_once);
}

bool sk_rcu_in_use(void)
{
	return sk_load_acquire(&rcu_started);
}

void sk_rcu_register_self(void)
{
	if (sk_likely(rcu_registered))
		return;
	sk_rcu_start();
	rcu_registered = true;
	/* A callback (running on liburcu's worker, registered by liburcu)
	 * may queue more work: a TYPESAFE_BY_RCU slab emptied by a deferred
	 * SLOB free. */
	if (pthread_equal(pthread_self(), rcu_worker))
		return;
	urcu_memb_register_thread();
	pthread_setspecific(rcu_thread_key, (void *)1); /* runs rcu_thread_exit at exit */
}

void sk_rcu_call(void *head, void (*fn)(void *head))
{
	sk_rcu_register_self();
	/* fn takes the head as void *; liburcu passes its struct rcu_head *,
	 * the same pointer. */
	urcu_memb_call_rcu((struct rcu_head *)head, (void (*)(struct rcu_head *))(void *)fn);
}

void sk_rcu_barrier(void)
{
	if (!sk_rcu_in_use())
		return;
	sk_rcu_register_self();
	urcu_memb_barrier();
}

/* --- fork (core/fork.c) --- */

void sk_rcu_fork_prepare(void)
{
	if (!sk_rcu_in_use())
		return;
	urcu_memb_call_rcu_before_fork();
}

void sk_rcu_fork_parent(void)
{
	if (!sk_rcu_in_use())
		return;
	urcu_memb_call_rcu_after_fork_parent();
}

void sk_rcu_fork_child(void)
{
	if (!sk_rcu_in_use())
		return;
	urcu_memb_call_rcu_after_fork_child();
	rcu_worker = urcu_memb_get_call_rcu_thread(urcu_memb_get_default_call_rcu_data());
}

/* --- public calls --- */


SK_EXPORT void slabkit_rcu_read_lock(void)
{
	sk_rcu_register_self();
	urcu_memb_read_lock();
}

SK_EXPORT void slabkit_rcu_read_unlock(void)
{
	urcu_memb_read_unlock();
}

SK_EXPORT void slabkit_synchronize_rcu(void)
{
	sk_rcu_register_self();
	urcu_memb_synchronize_rcu();
}

SK_EXPORT void slabkit_rcu_barrier(void)
{
	sk_rcu_start();
	sk_rcu_barrier();
}
