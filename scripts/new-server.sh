#!/usr/bin/env bash
# Makes a student's own server from the coursework starter and registers it, in one command:
#
#   scripts/new-server.sh my-server
#
# 1. copies coursework/starter to servers/my-server;
# 2. renames the copy so it cannot clash with the starter: the package and its binary
#    (Cargo.toml), `NAME` in src/lib.rs (the `Server` header and /stats), and the crate in
#    src/main.rs and tests/ (`starter::` becomes `my_server::`);
# 3. registers it: a path dependency in architectures/Cargo.toml (which makes it a workspace
#    member by itself) and `entry::<my_server::Starter>(),` at the end of `ALL` in
#    architectures/src/lib.rs, each at the line marked "scripts/new-server.sh adds ...".
#
# After it, `simulator grade my-server --expect sequential` grades it, and `compare` and the
# labs start it by name. The name is lower case letters, digits and single hyphens, starting
# with a letter, and must not be a crate the workspace already has. Nothing is changed when
# a check fails. Run it from anywhere inside the repository.
set -euo pipefail

usage() {
    echo "usage: scripts/new-server.sh NAME   (e.g. my-server)" >&2
    exit 2
}

[[ $# -eq 1 ]] || usage
name=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if ! [[ $name =~ ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ ]]; then
    echo "new-server: '$name' is not a crate name here: use lower case letters, digits and single hyphens, starting with a letter (e.g. my-server)." >&2
    exit 2
fi
crate=${name//-/_}
if [[ -e servers/$name ]]; then
    echo "new-server: servers/$name already exists; choose another name or remove it first." >&2
    exit 1
fi
# Every package name of the workspace (and the starter itself), so the copy clashes with none.
if grep -rqs --include=Cargo.toml --exclude-dir=target -E "^name = \"($name|$crate)\"$" .; then
    echo "new-server: the workspace already has a crate called '$name'; choose another name." >&2
    exit 1
fi
lib=architectures/src/lib.rs
manifest=architectures/Cargo.toml
entry_mark='// scripts/new-server.sh adds new architectures above this line.'
dep_mark='# scripts/new-server.sh adds new architectures below this line.'
grep -qF "$entry_mark" "$lib" || { echo "new-server: $lib has lost its marker line ('$entry_mark')." >&2; exit 1; }
grep -qF "$dep_mark" "$manifest" || { echo "new-server: $manifest has lost its marker line ('$dep_mark')." >&2; exit 1; }

# 1 and 2: the renamed copy (without any build output a student's starter may hold).
mkdir -p servers
cp -r coursework/starter "servers/$name"
rm -rf "servers/$name/target"
sed -i -e "s/\"starter\"/\"$name\"/g" -e "s/\bstarter::/$crate::/g" \
    -e "s/CARGO_BIN_EXE_starter\b/CARGO_BIN_EXE_$name/g" \
    "servers/$name/Cargo.toml" "servers/$name"/src/*.rs "servers/$name"/tests/*.rs

# 3: the registry. The entry goes just above the marker, indented as the others.
awk -v line="    entry::<$crate::Starter>()," -v mark="$entry_mark" \
    'index($0, mark) { print line } { print }' "$lib" > "$lib.new" && mv "$lib.new" "$lib"
awk -v line="$name = { path = \"../servers/$name\" }" -v mark="$dep_mark" \
    '{ print } index($0, mark) { print line }' "$manifest" > "$manifest.new" && mv "$manifest.new" "$manifest"

cat <<EOF
servers/$name is your copy of the starter, registered as architecture '$name'.
  run it:    cargo run --release -p $name -- --addr 127.0.0.1:7777
  grade it:  cargo run --release -p simulator -- grade $name --expect sequential
Its design is yours to change at the '// STUDENT:' marks in servers/$name/src/lib.rs;
then grade it with the --expect of what you built (pool:N, per-connection, event-loop).
EOF
