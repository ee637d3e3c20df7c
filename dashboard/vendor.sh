#!/bin/sh
# Copies the npm-installed front-end libraries into the Python package, where meterhub serves
# them (content-hashed, long-cached) and the wheel ships them. The copies are committed, so
# neither `make test` nor an install of meterhub needs npm; run this only to change a version:
#
#   cd dashboard
#   npm install uplot@1.6.x   # edit the pin in package.json; package-lock.json follows
#   npm ci && npm run vendor  # or: sh vendor.sh
#
# then commit package.json, package-lock.json and src/meterhub/dashboard/static/vendor/.
set -eu
cd "$(dirname "$0")"
src=node_modules/uplot
dest=../src/meterhub/dashboard/static/vendor
[ -d "$src" ] || { echo "vendor.sh: $src is missing; run 'npm ci' in dashboard/ first" >&2; exit 1; }
mkdir -p "$dest"
cp "$src/dist/uPlot.iife.min.js" "$src/dist/uPlot.min.css" "$dest/"
cp "$src/LICENSE" "$dest/uPlot.LICENSE"
echo "vendored uPlot $(node -p "require('./$src/package.json').version") into $dest"
