#!/usr/bin/env bash
# Builds ebsnap's .deb (cargo-deb) and .rpm (rpmbuild) from this checkout:
#   bash packaging/build.sh --release   # the packages to install on hosts
#   bash packaging/build.sh             # from the debug build (what tests/package.sh checks)
# Both land in target/packages/ (and their paths are printed, one a line,
# on stdout). Installs cargo-deb (into ~/.cache/ebsnap/tools) and rpm (apt)
# when missing: packaging/install-tools.sh.
#
# Without --release it packages the debug binary that `cargo test` already
# built (stripped, fast compression): a package to test the packaging with,
# not to deploy; CI gains no release build. With --release, the release
# profile's binary (fat LTO, stripped, panic=abort), best compression.
#
# Both packages hold the same files, staged once in target/pkg-stage: the
# binary, the man page and completions (printed by the binary itself), the
# systemd units of examples/systemd with ExecStart=/usr/bin/ebsnap (the
# examples say /usr/local/bin, where a `cargo install` user puts it), the
# sysusers.d file of the user ebsnap, and the docs and examples.
set -euo pipefail
cd "$(dirname "$0")/.."

release=false
for arg in "$@"; do
  case "$arg" in
    --release) release=true ;;
    *) echo "build.sh: unknown argument $arg (usage: bash packaging/build.sh [--release])" >&2; exit 2 ;;
  esac
done

. packaging/install-tools.sh

# The binary's path, from cargo's own report of what it built. Without
# --release: `cargo test --no-run`, a no-op after the tests ran. Not `cargo
# build`: the tests' build has the dev-dependencies' features (aws-sdk-ec2
# test-util), so a plain debug build would compile the SDK a second time.
if $release; then
  build=(cargo build --locked --release --bin ebsnap)
else
  build=(cargo test --locked --no-run)
fi
binary=$("${build[@]}" --message-format=json-render-diagnostics | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if (m.get("reason") == "compiler-artifact" and m["target"]["kind"] == ["bin"]
            and m["target"]["name"] == "ebsnap" and not m["profile"]["test"]):
        print(m["executable"])
')
[ -x "$binary" ] || { echo "build.sh: cargo built no ebsnap binary" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || { echo "build.sh: no version in Cargo.toml" >&2; exit 1; }
revision=1
# The packages' dates: the commit's, so that two builds of one commit match.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"

# The staging directory; Cargo.toml's [package.metadata.deb] assets and
# packaging/rpm/ebsnap.spec.in name these paths.
stage=target/pkg-stage
rm -rf "$stage" && mkdir -p "$stage/completions" "$stage/systemd"
install -m 0755 "$binary" "$stage/ebsnap"
# The release profile strips already (the debug build keeps line tables,
# 28 MB of them); neither drops .comment, which lintian reports.
strip --remove-section=.comment --remove-section=.note "$stage/ebsnap"
"$stage/ebsnap" man | gzip -9n > "$stage/ebsnap.1.gz"
"$stage/ebsnap" completions bash > "$stage/completions/ebsnap"
"$stage/ebsnap" completions zsh > "$stage/completions/_ebsnap"
"$stage/ebsnap" completions fish > "$stage/completions/ebsnap.fish"
for unit in ebsnap.service ebsnap.timer ebsnap-check.service ebsnap-check.timer; do
  sed 's|/usr/local/bin/ebsnap|/usr/bin/ebsnap|g' "examples/systemd/$unit" > "$stage/systemd/$unit"
  if grep -q '^ExecStart=/usr/local' "$stage/systemd/$unit"; then
    echo "build.sh: $stage/systemd/$unit still runs /usr/local/bin/ebsnap" >&2
    exit 1
  fi
done
grep -q '^ExecStart=/usr/bin/ebsnap ' "$stage/systemd/ebsnap.service" \
  || { echo "build.sh: the packaged ebsnap.service does not run /usr/bin/ebsnap" >&2; exit 1; }

# One changelog entry per build: the changes themselves are in git.
maintainer="ebsnap maintainers <ops@example.com>"
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
{
  echo "ebsnap ($version-$revision) unstable; urgency=medium"
  echo
  echo "  * Built from commit $commit; the changes are in the git history."
  echo
  echo " -- $maintainer  $(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")"
} > "$stage/changelog"

out=target/packages
mkdir -p "$out"
rm -f "$out"/ebsnap_*.deb "$out"/ebsnap-*.rpm

# The .deb. --no-build: cargo-deb packages the staged binary, builds nothing.
deb_flags=(--no-build --deb-revision "$revision" --output "$out/")
$release || deb_flags+=(--fast)
"$EBSNAP_CARGO_DEB" "${deb_flags[@]}" >&2

# The .rpm, from the same staged files.
rpmtop="$PWD/target/pkg-rpm"
rm -rf "$rpmtop" && mkdir -p "$rpmtop"
{
  cat packaging/rpm/ebsnap.spec.in
  echo
  echo "%changelog"
  echo "* $(LC_ALL=C date -u -d "@$SOURCE_DATE_EPOCH" '+%a %b %d %Y') $maintainer - $version-$revision"
  echo "- Built from commit $commit; the changes are in the git history."
} > "$rpmtop/ebsnap.spec"
if $release; then payload=w19.zstdio; else payload=w3.zstdio; fi
rpmbuild -bb --quiet \
  --define "_topdir $rpmtop" \
  --define "_rpmdir $PWD/$out" \
  --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
  --define "_binary_payload $payload" \
  --define "ebsnap_version $version" \
  --define "ebsnap_release $revision" \
  --define "ebsnap_src $PWD" \
  --define "ebsnap_stage $PWD/$stage" \
  "$rpmtop/ebsnap.spec" >&2

ls "$PWD/$out"/ebsnap_*.deb "$PWD/$out"/ebsnap-*.rpm
