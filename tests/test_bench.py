#!/usr/bin/env python3
"""ctest "bench": slabkit-bench runs, and its outputs agree with each other.

Usage: test_bench.py <slabkit-bench> <work-dir>

1. `slabkit-bench --tiny --no-peers` runs every workload over glibc and every
   compiled backend and exits 0.
2. The CSV and the JSON parse, and every figure of the terminal table is the
   same figure in both (same workload, allocator, ns/op, vs glibc, held/live).
3. The HTML report is well-formed (every element closed, in order) and each
   of its sections holds exactly one chart (<svg>); the sections a full run
   must have are there.
4. A real program's allocations are recorded (SLABKIT_TRACE, over the
   library's own APIs: the benchmark's Larson-like and steady workloads,
   several threads) and replayed over every backend and glibc; the replay
   keeps no more objects live than the trace did (the peak is recomputed
   here from the file).
"""
import csv
import html.parser
import json
import os
import re
import struct
import subprocess
import sys

bench, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAILED:", what)


def run(args, env=None):
    e = dict(os.environ)
    e.pop("LD_PRELOAD", None)
    e.update(env or {})
    p = subprocess.run(args, cwd=work, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=600)
    return p


# --- 1. the run -------------------------------------------------------------------
p = run([bench, "--tiny", "--no-peers", "--out", "tiny"])
print(p.stdout[-3000:])
if p.returncode != 0:
    print(p.stderr)
check(p.returncode == 0, "slabkit-bench --tiny exits 0 (got %d)" % p.returncode)
check("\x1b[" not in p.stderr, "no progress line on a pipe")
table = {}
row = re.compile(r"^(\S+)\s+(glibc|slab|slub|slob|uma)\s+([0-9.]+|-)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+")
for line in p.stdout.splitlines():
    m = row.match(line)
    if m:
        table[(m.group(1), m.group(2))] = {"ns": m.group(3), "vs": m.group(6), "hl": m.group(9)}
check(len(table) > 40, "the table has rows (%d)" % len(table))
check(re.search(r"^machine: .*CPUs.*Linux.*glibc", p.stdout, re.M), "the machine is named")
check("== targets" in p.stdout, "the targets are printed")

# --- 2. CSV and JSON agree with the table --------------------------------------------
with open(os.path.join(work, "tiny.csv")) as f:
    rows = list(csv.DictReader(f))
with open(os.path.join(work, "tiny.json")) as f:
    doc = json.load(f)
check(len(rows) == len(table), "CSV has the table's rows (%d vs %d)" % (len(rows), len(table)))
results = {(r["workload"], r["allocator"]): r for r in doc["results"]}
check(len(results) == len(table), "JSON has the table's rows")


def same(text, value, fmt):
    if text == "-":
        return value in ("", None)
    if value in ("", None):
        return False
    return text == fmt % float(value)


for key, t in table.items():
    c = next((r for r in rows if (r["workload"], r["allocator"]) == key), None)
    j = results.get(key)
    if c is None or j is None:
        check(False, "row %s in CSV and JSON" % (key,))
        continue
    check(same(t["ns"], c["ns_per_op"], "%.2f"), "CSV ns/op of %s: %s vs %s" % (key, t["ns"], c["ns_per_op"]))
    check(same(t["ns"], j["ns_per_op"], "%.2f"), "JSON ns/op of %s: %s vs %s" % (key, t["ns"], j["ns_per_op"]))
    check(same(t["vs"].rstrip("x"), c["vs_glibc"], "%.2f"), "CSV vs_glibc of %s" % (key,))
    check(same(t["vs"].rstrip("x"), j["vs_glibc"], "%.2f"), "JSON vs_glibc of %s" % (key,))
    check(same(t["hl"], c["held_per_live"], "%.3f"), "CSV held_per_live of %s" % (key,))
    check(same(t["hl"], j["held_per_live"], "%.3f"), "JSON held_per_live of %s" % (key,))
check(all(t["verdict"] in ("met", "MISSED", "not measured") for t in doc["targets"]), "target verdicts")
steady = [r for r in doc["results"] if r["workload"] == "steady"]
check(steady and all(len(r["memory_series"]) > 10 for r in steady), "memory series for the steady workload")

# --- 3. the HTML report -----------------------------------------------------------------
VOID = {"meta", "br", "img", "input", "link", "hr", "area", "base", "col", "embed", "source", "track", "wbr"}
SVG_LEAF = {"rect", "line", "polyline", "circle", "path"}


class Checker(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.sections, self.section_ids = [], [], [], []
        self.in_svg = 0

    def handle_starttag(self, tag, attrs):
        if tag in VOID:
            return
        self.stack.append(tag)
        if tag == "section":
            self.sections.append(0)
            self.section_ids.append(dict(attrs).get("id"))
        if tag == "svg":
            if not self.stack[:-1] or "section" not in self.stack[:-1]:
                self.errors.append("svg outside a section")
            elif self.sections:
                self.sections[-1] += 1

    def handle_startendtag(self, tag, attrs):
        if tag == "svg":
            self.errors.append("empty svg")

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("</%s> closes <%s>" % (tag, self.stack[-1] if self.stack else "nothing"))
            return
        self.stack.pop()


with open(os.path.join(work, "tiny.html")) as f:
    page = f.read()
h = Checker()
h.feed(page)
h.close()
check(not h.errors, "HTML well-formed: %s" % h.errors[:5])
check(not h.stack, "HTML: every element closed (%s left open)" % h.stack)
check(h.sections and all(n == 1 for n in h.sections), "one chart per section: %s" % h.sections)
for want in ("targets", "throughput", "memory", "fragmentation", "threads", "live-set"):
    check(want in h.section_ids, "HTML has the %s section" % want)
check(not re.search(r"(src|href)=\"?https?:", page), "the report needs no network")

# --- 4. record a real program, replay it -------------------------------------------------
trace = os.path.join(work, "larson.sktrace")
for wl in ("larson",):
    t = os.path.join(work, wl + ".sktrace")
    p = run([bench, "--child", "slub", "slabkit", wl, "20000", "1", "0", "1", "0.5", "tiny", "1,2", "-"],
            {"SLABKIT_TRACE": t, "SLABKIT_BACKEND": "slub"})
    check(p.returncode == 0, "the traced %s child runs (%s)" % (wl, p.stderr[-300:]))
with open(trace, "rb") as f:
    data = f.read()
check(data[:8] == b"SKTRACE1", "trace magic")
live, peak, threads, allocs = set(), 0, set(), 0
pending = None
for off in range(32, len(data) - 23, 24):
    oid, size, ms, thread, op, al = struct.unpack_from("<QQIHBB", data, off)
    kind = op & 15
    threads.add(thread)
    if kind == 1:
        live.add(oid)
        allocs += 1
    elif kind == 2:
        live.discard(oid)
    elif kind == 3:
        pending = oid
    elif kind == 4:
        live.discard(pending)
        live.add(oid)
    peak = max(peak, len(live))
check(allocs > 10000, "the trace holds the program's allocations (%d)" % allocs)
check(len(threads) >= 2, "the trace names several threads (%d)" % len(threads))

p = run([bench, "--replay", trace, "--tiny", "--no-peers", "--out", "replay"])
print(p.stdout[-2000:])
check(p.returncode == 0, "--replay exits 0 (%s)" % p.stderr[-300:])
with open(os.path.join(work, "replay.json")) as f:
    rdoc = json.load(f)
check(rdoc["replay"]["peak_live_objects"] == peak,
      "replay holds at most the trace's live objects (%s vs %d)" % (rdoc["replay"]["peak_live_objects"], peak))
replayed = {r["allocator"]: r for r in rdoc["results"] if r["workload"] == "replay"}
for name in ["glibc"] + [a["name"] for a in rdoc["allocators"] if a["kind"] == "slabkit"]:
    r = replayed.get(name)
    check(r is not None and r["ns_per_op"] and not r["error"], "replay over %s measured" % name)
    check(r is not None and len(r["memory_series"]) > 10, "replay memory series over %s" % name)
h = Checker()
with open(os.path.join(work, "replay.html")) as f:
    h.feed(f.read())
check(not h.errors and h.sections and all(n == 1 for n in h.sections), "replay HTML: one chart per section")

print("bench test: %d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
