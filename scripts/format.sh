#!/usr/bin/env bash
# Formats the tree, or with --check fails naming the files that are not formatted (CI runs the check).
# TypeScript and JavaScript: prettier (pinned in devDependencies, settings in .prettierrc.json).
# C++ and CUDA: clang-format 19.1.7 from PyPI (settings in .clang-format); another release formats a
# few constructs differently, so the check insists on that one.
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG_FORMAT_VERSION=19.1.7

mode=write
[[ "${1:-}" == "--check" ]] && mode=check

if ! command -v clang-format >/dev/null || [[ "$(clang-format --version)" != *"version $CLANG_FORMAT_VERSION"* ]]; then
  echo "clang-format $CLANG_FORMAT_VERSION is needed: python3 -m pip install clang-format==$CLANG_FORMAT_VERSION" >&2
  exit 1
fi

# Tracked and new files that are not ignored (never build output or node_modules) and still exist.
files() { git ls-files --cached --others --exclude-standard -- "$@" | while read -r f; do [[ -f "$f" ]] && echo "$f"; done; }
# onnx_pb.ts is generated (npm run generate:onnx) and kept as the generator wrote it.
mapfile -t scripts < <(files '*.ts' '*.mjs' | grep -v '^lib/export/proto/onnx_pb.ts$')
mapfile -t cpp < <(files 'native/*.cpp' 'native/*.h' 'native/*.cu' 'native/*.inc' 'bench/*.cpp')

if [[ "$mode" == check ]]; then
  npx --no-install prettier --check "${scripts[@]}"
  clang-format --dry-run --Werror "${cpp[@]}"
  echo "format: ${#scripts[@]} TypeScript/JavaScript and ${#cpp[@]} C++ files are formatted"
else
  npx --no-install prettier --write --log-level warn "${scripts[@]}"
  clang-format -i "${cpp[@]}"
fi
