#!/usr/bin/env bash
# tests/numa-vm.sh BUILD_DIR [NODE_COUNTS...]
#
# Placement on a real multi-node kernel.  This machine has one NUMA node, so
# slabkit's binding of its per-node arenas can only be seen inside a guest
# that has several: boot Debian's own kernel under qemu-system-x86_64 (TCG
# emulation, no KVM) with 2 and then 4 NUMA nodes (one memory-backend-ram
# object and one `-numa node` per node, one CPU each), from an initramfs
# holding busybox, tests/numa_nodes.c's program (slabkit linked statically)
# and the shared libraries ldd lists for it.  In the guest, /init runs that
# program for every backend with SLABKIT_TEST_PHYSICAL=1 (every node-directed
# object's page is checked with move_pages(2) in query mode against the OS
# node asked for) and tests/numa_policy.c's program for every backend and
# policy, prints one "NUMA-VM-RESULT ..." line per run on the serial
# console, and powers off.  This script reads the console log and fails
# unless every run passed.
#
# The kernel: the linux-image-6.1.0-*-amd64 package that linux-image-amd64
# depends on, fetched with `apt-get download` and unpacked (dpkg-deb -x) in
# BUILD_DIR/numa-vm/kernel; nothing is installed on the host.  Packages the
# script needs (qemu-system-x86, busybox-static, cpio) are installed with
# apt-get when missing and the script runs as root; where one really cannot
# be had, it prints "skipped: why" and exits 0.
set -euo pipefail

build=${1:?usage: numa-vm.sh BUILD_DIR [NODE_COUNTS...]}
shift
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(2 4)
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "$build" && pwd)
work=$build/numa-vm
mkdir -p "$work"

skip() { echo "numa-vm: skipped: $*"; exit 0; }
say() { echo "numa-vm: $*"; }

# --- packages ---
need_pkgs=()
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" ||
	need_pkgs+=(busybox-static)
command -v cpio >/dev/null || need_pkgs+=(cpio)
command -v xz >/dev/null || need_pkgs+=(xz-utils)
if [ ${#need_pkgs[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		say "installing ${need_pkgs[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null 2>&1 ||
			{ apt-get update -qq >/dev/null 2>&1 &&
			  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null 2>&1; } ||
			skip "cannot install ${need_pkgs[*]} with apt-get"
	else
		skip "missing ${need_pkgs[*]} (not root, or no apt-get)"
	fi
fi
command -v dpkg-deb >/dev/null && command -v apt-get >/dev/null ||
	skip "no apt-get/dpkg-deb to fetch Debian's kernel"

# --- the kernel, cached under the build dir ---
kdir=$work/kernel
mkdir -p "$kdir"
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kpkg" ] || skip "apt-cache knows no linux-image-amd64 dependency (apt-get update?)"
vmlinuz=$(ls "$kdir"/root/boot/vmlinuz-* 2>/dev/null | head -1 || true)
if [ -z "$vmlinuz" ] || [ "$(basename "$vmlinuz")" != "vmlinuz-${kpkg#linux-image-}" ]; then
	rm -rf "$kdir"/root "$kdir"/*.deb
	say "fetching $kpkg"
	( cd "$kdir" && chmod 777 . && apt-get download "$kpkg" >/dev/null 2>&1 ) ||
		{ apt-get update -qq >/dev/null 2>&1 || true
		  ( cd "$kdir" && apt-get download "$kpkg" >/dev/null 2>&1 ); } ||
		skip "apt-get download $kpkg failed (no access to the Debian archive)"
	dpkg-deb -x "$kdir"/"$kpkg"_*.deb "$kdir"/root
	rm -f "$kdir"/*.deb
	vmlinuz=$(ls "$kdir"/root/boot/vmlinuz-* | head -1)
fi
# The bzImage decompresses itself with xz, which takes TCG some 15 s: boot
# the ELF inside it instead (QEMU starts it through its PVH entry note).
kernel=$kdir/vmlinux
if [ ! -s "$kernel" ] || [ "$kernel" -ot "$vmlinuz" ]; then
	pos=$(grep -abo $'\xfd7zXZ\x00' "$vmlinuz" | head -1 | cut -d: -f1 || true)
	rm -f "$kernel"
	if [ -n "$pos" ]; then
		tail -c+$((pos + 1)) "$vmlinuz" | xz -dc > "$kernel" 2>/dev/null || true
	fi
	[ "$(head -c4 "$kernel" 2>/dev/null | od -An -c | tr -d ' ')" = 177ELF ] || rm -f "$kernel"
fi
[ -s "$kernel" ] || kernel=$vmlinuz
say "kernel $(basename "$vmlinuz") (booting $(basename "$kernel"))"

# --- the programs ---
progs=(numa_nodes)
[ -f "$src/tests/numa_policy.c" ] && progs+=(numa_policy)
cmake --build "$build" -j2 --target "${progs[@]}" >/dev/null
runs=$((4 * ${#progs[@]}))  # backends x programs

# --- the initramfs ---
root=$work/initramfs
rm -rf "$root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib64,usr/lib/x86_64-linux-gnu}
cp /bin/busybox "$root"/bin/busybox
for applet in sh mount echo cat poweroff reboot ls sleep grep; do
	ln -s busybox "$root/bin/$applet"
done
for p in "${progs[@]}"; do
	cp "$build/tests/$p" "$root/bin/$p"
	# Every shared library at the path the loader will look for it.
	ldd "$build/tests/$p" | awk '/=> \// { print $3 } /^\t\/[^ ]*ld-linux/ { print $1 }' |
	while read -r lib; do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
done
# Debian's /lib is a symlink to /usr/lib: keep both spellings working.
if [ -d "$root/lib" ] && [ ! -L "$root/lib" ]; then
	cp -a "$root"/lib/. "$root"/usr/lib/ && rm -rf "$root/lib"
fi
ln -sfn usr/lib "$root/lib"

cat > "$root/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
nodes=$(ls -d /sys/devices/system/node/node* | wc -l)
echo "NUMA-VM-GUEST nodes=$nodes cpus=$(grep -c ^processor /proc/cpuinfo) kernel=$(cat /proc/sys/kernel/osrelease)"
for n in /sys/devices/system/node/node*; do
	echo "NUMA-VM-GUEST $(basename $n) cpus=$(cat $n/cpulist) $(grep MemTotal $n/meminfo | sed 's/  */ /g')"
done
export SLABKIT_TEST_PHYSICAL=1 SLABKIT_TICK_MS=-1 SLABKIT_TEST_OBJECTS=${objects}
for b in slab slub slob uma; do
	SLABKIT_BACKEND=$b /bin/numa_nodes > /tmp/out 2>&1
	rc=$?
	cat /tmp/out
	echo "NUMA-VM-RESULT test=numa_nodes backend=$b nodes=$nodes rc=$rc t=$(cut -d' ' -f1 /proc/uptime)"
	[ -x /bin/numa_policy ] || continue
	SLABKIT_BACKEND=$b /bin/numa_policy > /tmp/out 2>&1
	rc=$?
	cat /tmp/out
	echo "NUMA-VM-RESULT test=numa_policy backend=$b nodes=$nodes rc=$rc t=$(cut -d' ' -f1 /proc/uptime)"
done
echo "NUMA-VM-DONE t=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
EOF
chmod +x "$root/init"

run_guest() {
	local nodes=$1 mem=256 log=$work/guest-${1}n.log
	local args=() objects=$2 initrd=$work/initramfs-${1}n.gz
	# The image is the shared tree plus this guest's /init.
	( cd "$root" && find . ! -name init | cpio -o -H newc --quiet ) > "$initrd.cpio"
	local extra=$work/init-${nodes}n
	rm -rf "$extra" && mkdir -p "$extra"
	sed "s/\${objects}/$objects/" "$root/init" > "$extra/init" && chmod +x "$extra/init"
	( cd "$extra" && echo init | cpio -o -H newc --quiet ) >> "$initrd.cpio"
	gzip -1 -c "$initrd.cpio" > "$initrd" && rm -f "$initrd.cpio"
	for ((n = 0; n < nodes; n++)); do
		args+=(-object "memory-backend-ram,id=m$n,size=${mem}M"
		       -numa "node,nodeid=$n,cpus=$n,memdev=m$n")
	done
	# no_timer_check: under TCG on a loaded host the kernel's early check
	# of the IO-APIC timer can miss its ticks and panic ("IO-APIC + timer
	# doesn't work!") before /init runs; the check is for broken hardware.
	local attempt
	for attempt in 1 2; do
		say "booting a $nodes-node guest (TCG, ${mem} MiB per node)"
		local t0=$SECONDS
		timeout 300 qemu-system-x86_64 -accel tcg -machine pc -cpu max -smp "$nodes" \
			-m $((mem * nodes))M "${args[@]}" \
			-kernel "$kernel" -initrd "$initrd" \
			-append "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off no_timer_check" \
			-display none -serial "file:$log" -monitor none -no-reboot </dev/null ||
			say "qemu exited with $? (see $log)"
		say "$nodes-node guest done in $((SECONDS - t0)) s"
		# A guest that never reached /init failed to boot, which says
		# nothing about slabkit: boot it once more.  One that ran the tests
		# is judged as it is.
		grep -q "NUMA-VM-GUEST" "$log" && break
		[ $attempt = 1 ] && { say "the $nodes-node guest did not reach /init; its console:"; tail -5 "$log"; }
	done
}

# The guests are independent: boot them side by side.
pids=()
for nodes in "${counts[@]}"; do
	run_guest "$nodes" "${SLABKIT_VM_OBJECTS:-400}" &
	pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done

fail=0
for nodes in "${counts[@]}"; do
	log=$work/guest-${nodes}n.log
	touch "$log"
	tr -d '\r' < "$log" > "$log.txt"
	grep -E "^NUMA-VM-GUEST" "$log.txt" || true
	seen=$(grep -c "^NUMA-VM-RESULT" "$log.txt" || true)
	bad=$(grep "^NUMA-VM-RESULT" "$log.txt" | grep -vc " rc=0 " || true)
	grep -q "^NUMA-VM-GUEST nodes=$nodes " "$log.txt" ||
		{ say "FAIL: the guest did not report $nodes nodes"; fail=1; }
	grep -q "^NUMA-VM-DONE" "$log.txt" || { say "FAIL: the $nodes-node guest did not finish"; fail=1; }
	[ "$seen" = $runs ] || { say "FAIL: $seen of $runs runs reported"; fail=1; }
	if [ "$bad" != 0 ]; then
		say "FAIL: $bad runs failed:"
		grep "^NUMA-VM-RESULT" "$log.txt" | grep -v " rc=0 "
		grep -E "^ERROR|FAILED" "$log.txt" | head -40
		fail=1
	fi
	grep "^NUMA-VM-RESULT" "$log.txt" | sed 's/^/  /'
	grep -E "^numa_(nodes|policy): .*(physical_ok=[0-9]|physical:|physical-off=0)" "$log.txt" |
		awk -v n="$nodes" '{ k++ } END { print "  " n "-node guest: " k " placement lines checked against move_pages" }'
done
[ $fail = 0 ] && say "PASS: placement checked on ${counts[*]}-node guests" || say "FAIL"
exit $fail
