#!/usr/bin/env bash
# Install the Debian programs the tests use as real peers (dcmtk, dicom3tools, orthanc,
# postgresql, chromium for the browser test).
# As root: installs what is missing. Otherwise: says which tests will be skipped.
set -euo pipefail
declare -A package_of=([storescu]=dcmtk [dcmcjpeg]=dcmtk [dciodvfy]=dicom3tools [Orthanc]=orthanc
  [chromium]=chromium)
missing=()
for tool in "${!package_of[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done
# PostgreSQL's server programs live outside PATH.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0
packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: $packages"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
else
  echo "not root: missing Debian packages $packages;"
  echo "tests that need them (SEG validation with dciodvfy, JPEG Lossless with dcmtk) will be skipped."
  echo "install them with: sudo apt-get install $packages"
fi
