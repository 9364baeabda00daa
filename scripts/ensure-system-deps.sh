#!/usr/bin/env bash
# Install the Debian packages the tests use as real DICOM peers (DCMTK, dicom3tools, Orthanc), when missing.
set -euo pipefail
missing=()
command -v storescu >/dev/null 2>&1 || missing+=(dcmtk)
command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# the reference PACS of config/orthanc/ (tests/ops/test_orthanc_forwarding.py)
command -v Orthanc >/dev/null 2>&1 || missing+=(orthanc)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
