#!/usr/bin/env python3
"""Parse a slabkit JSON report with Python's json module, check its schema
(docs/stats.md) and the expected figures given on the command line:

    check_report_json.py report.json caches:trk_rep:active_objs=120 \
        malloc_types:rep_type:in_use=3 uma_zones:rep_zone:used=5 totals::nodes=1

Exit status 0 when everything holds; the first failure is printed."""
import json
import sys

CACHE_KEYS = {"name", "front_end", "backend", "object_size", "size", "align", "objects_per_slab",
              "pages_per_slab", "active_objs", "total_objs", "high_water", "slabs", "pages",
              "bytes_held", "bytes_live", "efficiency", "allocs", "frees", "refills", "flushes",
              "failures", "bytes_requested", "bytes_allocated", "free", "xdomain_frees",
              "tunables", "zone_max"}
SLAB_KEYS = {"total", "active", "full", "partial", "empty", "cpu"}
TYPE_KEYS = {"name", "in_use", "mem_use", "high_use", "requests", "frees", "sizes"}
ZONE_KEYS = {"name", "backend", "size", "limit", "used", "free", "requests", "failures", "sleeps",
             "xdomain"}
NODE_KEYS = {"node", "os_node", "memory_bytes", "bytes_reserved", "bytes_in_use", "bytes_committed",
             "bytes_returned", "madvise_calls", "page_allocs", "directed_hits", "directed_misses",
             "used_blocks_by_order", "free_blocks_by_order"}
TOP_KEYS = {"slabkit", "pid", "time", "default_backend", "percpu", "page_size", "caches",
            "malloc_types", "uma_zones", "nodes", "large", "tracking", "totals"}


def fail(msg):
    print("check_report_json: " + msg)
    sys.exit(1)


def need(obj, keys, what):
    missing = keys - set(obj)
    if missing:
        fail("%s lacks %s" % (what, sorted(missing)))


def main():
    doc = json.load(open(sys.argv[1]))
    need(doc, TOP_KEYS, "document")
    for c in doc["caches"]:
        need(c, CACHE_KEYS, "cache " + c.get("name", "?"))
        need(c["slabs"], SLAB_KEYS, "cache %s slabs" % c["name"])
        s = c["slabs"]
        if s["full"] + s["partial"] + s["empty"] + s["cpu"] != s["total"]:
            fail("cache %s: slabs by state do not add up: %r" % (c["name"], s))
        if s["active"] != s["total"] - s["empty"]:
            fail("cache %s: active slabs %d != total - empty" % (c["name"], s["active"]))
        if c["allocs"]["fast"] + c["allocs"]["slow"] != c["allocs"]["total"]:
            fail("cache %s: fast + slow allocs != total" % c["name"])
        # One report's figures come from one racy sum: in use is allocs - frees
        # (0 if a free was counted before its allocation).
        if max(c["allocs"]["total"] - c["frees"]["total"], 0) != c["active_objs"]:
            fail("cache %s: allocs - frees != active_objs" % c["name"])
        if c["efficiency"] is not None and not 0 <= c["efficiency"] <= 1:
            fail("cache %s: efficiency %r outside 0..1" % (c["name"], c["efficiency"]))
    for t in doc["malloc_types"]:
        need(t, TYPE_KEYS, "malloc type " + t.get("name", "?"))
    for z in doc["uma_zones"]:
        need(z, ZONE_KEYS, "zone " + z.get("name", "?"))
    if not doc["nodes"]:
        fail("no NUMA node")
    for n in doc["nodes"]:
        need(n, NODE_KEYS, "node %r" % n.get("node"))
    for spec in sys.argv[2:]:
        path, want = spec.split("=", 1)
        section, name, field = path.split(":", 2)
        if name:
            items = [x for x in doc[section] if x["name"] == name]
            if len(items) != 1:
                fail("%s: %d entries named %s" % (section, len(items), name))
            value = items[0]
        else:
            value = doc[section]
        for part in field.split("."):
            value = value[part]
        if str(value) != want:
            fail("%s is %r, expected %s" % (path, value, want))
    print("check_report_json: %d caches, %d types, %d zones, %d nodes: ok" %
          (len(doc["caches"]), len(doc["malloc_types"]), len(doc["uma_zones"]), len(doc["nodes"])))


main()
