# Sourced by the scripts: puts the pinned wasm-opt (npm binaryen, run by scripts/bin/wasm-opt)
# first on PATH. cargo puts ~/.cargo/bin first for subcommands, so no wasm-opt may live there.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$repo_root/scripts/bin:$repo_root/end2end/node_modules/.bin:$HOME/.cargo/bin:$PATH"
