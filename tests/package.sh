#!/usr/bin/env bash
# The packages, end to end: builds the .deb and the .rpm from the tests'
# debug build (packaging/build.sh), lints both, checks their file lists,
# installs the .deb, checks what it installed (the binary, the man page, the
# completions, the units with `systemd-analyze verify`, alone and with the
# metrics.conf and ssh-hook.conf drop-ins, their `systemd-analyze security`
# score, the glibc the binary needs), then purges it and checks that nothing
# it installed or made is left, the user ebsnap included.
#   bash tests/package.sh
# tests/run-all.sh runs it after cargo test when given no filter. Installs
# what it needs when missing: cargo-deb (into ~/.cache/ebsnap/tools), and
# with apt-get rpm, lintian, rpmlint, man-db. Installs and purges the
# package ebsnap on this host: root (or sudo) needed, and it refuses to run
# where ebsnap is installed or a user ebsnap exists.
set -euo pipefail
cd "$(dirname "$0")/.."

# The oldest glibc the binary may need; README (Install) names it.
glibc_floor=2.34
# The highest `systemd-analyze security` exposure ebsnap.service may have
# (0 = locked down, 10 = none). The units reach 1.1; what is left is the
# network access ebsnap needs (AF_INET, no PrivateNetwork, no IP allow
# list: AWS's endpoints have no fixed addresses).
exposure_max=1.5

fail() {
  echo "package.sh: FAIL: $*" >&2
  exit 1
}

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

. packaging/install-tools.sh
need=()
command -v lintian >/dev/null || need+=(lintian)
command -v rpmlint >/dev/null || need+=(rpmlint)
command -v man >/dev/null || need+=(man-db)
command -v objdump >/dev/null || need+=(binutils)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  ebsnap_apt_install "${need[@]}" || fail "could not install ${need[*]}"
fi

if dpkg-query -W -f '${Status}' ebsnap 2>/dev/null | grep -q installed; then
  fail "the package ebsnap is installed on this host; this test installs and purges it: dpkg --purge ebsnap first (or run it elsewhere)"
fi
if getent passwd ebsnap >/dev/null; then
  fail "a user ebsnap exists; this test's purge would remove it: userdel ebsnap first (or run it elsewhere)"
fi

work=$(mktemp -d)
installed=false
cleanup() {
  if $installed; then $sudo dpkg --purge ebsnap >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

start=$SECONDS
packages=$(bash packaging/build.sh) || fail "packaging/build.sh failed"
deb=$(grep '\.deb$' <<<"$packages")
rpm=$(grep '\.rpm$' <<<"$packages")
[ -f "$deb" ] && [ -f "$rpm" ] || fail "packaging/build.sh made no .deb and .rpm: $packages"
echo "package.sh: built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB) and $(basename "$rpm") ($(du -k "$rpm" | cut -f1) KiB) in $((SECONDS - start))s" >&2

# Lint. Overrides (packaging/debian/lintian-overrides) and filters
# (packaging/rpm/rpmlint.toml) each say why.
lintian --fail-on error,warning "$deb" >"$work/lintian" 2>&1 \
  || { cat "$work/lintian" >&2; fail "lintian reports errors or warnings on $(basename "$deb")"; }
grep -v '^running with root privileges' "$work/lintian" >&2 || true
rpmlint -c packaging/rpm/rpmlint.toml "$rpm" >"$work/rpmlint" 2>&1 || true
grep -q ' 0 errors, 0 warnings' "$work/rpmlint" \
  || { cat "$work/rpmlint" >&2; fail "rpmlint reports errors or warnings on $(basename "$rpm")"; }
echo "package.sh: lintian and rpmlint: 0 errors, 0 warnings" >&2

# The files each package holds: exactly these.
common="/usr/bin/ebsnap
/usr/lib/systemd/system/ebsnap-check.service
/usr/lib/systemd/system/ebsnap-check.timer
/usr/lib/systemd/system/ebsnap.service
/usr/lib/systemd/system/ebsnap.timer
/usr/lib/sysusers.d/ebsnap.conf
/usr/share/bash-completion/completions/ebsnap
/usr/share/doc/ebsnap/README.md
/usr/share/doc/ebsnap/examples/crontab
/usr/share/doc/ebsnap/examples/iam-policy.json
/usr/share/doc/ebsnap/examples/metrics.conf
/usr/share/doc/ebsnap/examples/ssh-hook.conf
/usr/share/fish/vendor_completions.d/ebsnap.fish
/usr/share/man/man1/ebsnap.1.gz"
sort <<<"$common
/usr/share/doc/ebsnap/changelog.Debian.gz
/usr/share/doc/ebsnap/copyright
/usr/share/lintian/overrides/ebsnap
/usr/share/zsh/vendor-completions/_ebsnap" >"$work/deb.want"
sort <<<"$common
/usr/share/licenses/ebsnap/LICENSE
/usr/share/zsh/site-functions/_ebsnap" >"$work/rpm.want"
dpkg-deb --fsys-tarfile "$deb" | tar -t | grep -v '/$' | sed 's|^\./|/|' | sort >"$work/deb.got"
# rpm -qpl lists directories it owns too: only files count here.
rpm -qp --qf '[%{FILENAMES} %{FILEMODES:perms}\n]' "$rpm" | grep -v ' d' | cut -d' ' -f1 | sort >"$work/rpm.got"
diff -u "$work/deb.want" "$work/deb.got" >&2 || fail "the .deb's files differ from the list in tests/package.sh"
diff -u "$work/rpm.want" "$work/rpm.got" >&2 || fail "the .rpm's files (rpm -qpl) differ from the list in tests/package.sh"
rpm -qp --scripts "$rpm" | grep -q 'systemd-sysusers /usr/lib/sysusers.d/ebsnap.conf' \
  || fail "the .rpm's %post does not create the user ebsnap"

# Install, and check what it installed.
$sudo dpkg -i "$deb" >"$work/dpkg" 2>&1 || { cat "$work/dpkg" >&2; fail "dpkg -i $(basename "$deb") failed"; }
installed=true
getent passwd ebsnap >/dev/null || fail "installing made no user ebsnap"
version=$(/usr/bin/ebsnap --version) || fail "/usr/bin/ebsnap --version failed"
[[ "$version" == "ebsnap $(dpkg-query -W -f '${Version}' ebsnap | sed 's/-[^-]*$//')"* ]] \
  || fail "ebsnap --version says '$version', the package $(dpkg-query -W -f '${Version}' ebsnap)"
[ "$(man -w ebsnap)" = /usr/share/man/man1/ebsnap.1.gz ] || fail "man -w ebsnap: $(man -w ebsnap 2>&1)"
for completion in /usr/share/bash-completion/completions/ebsnap \
  /usr/share/zsh/vendor-completions/_ebsnap /usr/share/fish/vendor_completions.d/ebsnap.fish; do
  [ -s "$completion" ] || fail "no completion script $completion"
done
bash -n /usr/share/bash-completion/completions/ebsnap || fail "the bash completion script does not parse"

# The installed units, then the same with the example drop-ins (a copy in a
# unit directory of this test's own, so the host's /etc is never touched).
# systemd-analyze verify exits 0 on an unknown setting: any output fails.
units=(ebsnap.service ebsnap.timer ebsnap-check.service ebsnap-check.timer)
for unit in "${units[@]}"; do
  grep -q '^ExecStart=/usr/local' "/usr/lib/systemd/system/$unit" && fail "$unit runs /usr/local/bin/ebsnap"
done
(cd /usr/lib/systemd/system && systemd-analyze verify "${units[@]}") >"$work/verify" 2>&1 \
  && [ ! -s "$work/verify" ] || { cat "$work/verify" >&2; fail "systemd-analyze verify on the installed units"; }
dropins="$work/units"
mkdir -p "$dropins/ebsnap.service.d" "$dropins/ebsnap-check.service.d"
cp /usr/lib/systemd/system/ebsnap*.service /usr/lib/systemd/system/ebsnap*.timer "$dropins/"
cp /usr/share/doc/ebsnap/examples/metrics.conf /usr/share/doc/ebsnap/examples/ssh-hook.conf "$dropins/ebsnap.service.d/"
cp /usr/share/doc/ebsnap/examples/metrics.conf "$dropins/ebsnap-check.service.d/"
(cd "$dropins" && SYSTEMD_UNIT_PATH="$dropins:" systemd-analyze verify "${units[@]}") >"$work/verify" 2>&1 \
  && [ ! -s "$work/verify" ] || { cat "$work/verify" >&2; fail "systemd-analyze verify with the metrics.conf and ssh-hook.conf drop-ins"; }
for unit in ebsnap.service ebsnap-check.service; do
  for where in /usr/lib/systemd/system "$dropins"; do
    exposure=$(SYSTEMD_UNIT_PATH="$where:" systemd-analyze security --offline=yes --no-pager "$where/$unit" 2>&1 \
      | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) .*/\1/p')
    [ -n "$exposure" ] || fail "systemd-analyze security gave no score for $unit"
    label=$unit; [ "$where" = /usr/lib/systemd/system ] || label="$unit with drop-ins"
    echo "package.sh: systemd-analyze security $label: $exposure (at most $exposure_max)" >&2
    awk -v e="$exposure" -v m="$exposure_max" 'BEGIN { exit !(e <= m) }' \
      || fail "$label: exposure $exposure, above $exposure_max"
  done
done

# The oldest glibc the binary runs on: its newest versioned glibc symbol.
needs=$(objdump -T /usr/bin/ebsnap | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
[ -n "$needs" ] || fail "objdump -T found no versioned glibc symbol in /usr/bin/ebsnap"
[ "$(printf '%s\n%s\n' "$needs" "$glibc_floor" | sort -V | tail -n 1)" = "$glibc_floor" ] \
  || fail "ebsnap needs glibc $needs, newer than the $glibc_floor the README promises"
grep -q "glibc $glibc_floor" README.md || fail "README.md does not name glibc $glibc_floor"
echo "package.sh: ebsnap needs glibc $needs (at most $glibc_floor)" >&2

# Purge: nothing the package installed or made is left.
$sudo dpkg --purge ebsnap >"$work/dpkg" 2>&1 || { cat "$work/dpkg" >&2; fail "dpkg --purge ebsnap failed"; }
installed=false
while read -r path; do
  [ ! -e "$path" ] || fail "$path is left after dpkg --purge"
done <"$work/deb.want"
getent passwd ebsnap >/dev/null && fail "the user ebsnap is left after dpkg --purge"
getent group ebsnap >/dev/null && fail "the group ebsnap is left after dpkg --purge"
left=$(find /etc/systemd /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
  -name '*ebsnap*' 2>/dev/null || true)
[ -z "$left" ] || fail "left after dpkg --purge: $left"

echo "package.sh: OK ($((SECONDS - start))s)" >&2
