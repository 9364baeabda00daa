#!/usr/bin/env bash
# Install the Debian packages the tests use as real DICOM peers (DCMTK, dicom3tools, Orthanc), when missing.
set -euo pipefail
missing=()
command -v storescu >/dev/null 2>&1 || missing+=(dcmtk)
command -v dciodvfy >/dev/null 2>&1 || missing+=(dicom3tools)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# Orthanc: the PACS of the end-to-end test, which starts its own Orthanc processes.
{ command -v Orthanc || [ -x /usr/sbin/Orthanc ]; } >/dev/null 2>&1 || missing+=(orthanc)
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
# The package enables a system-wide Orthanc service (ports 8042 and 4242); the tests
# do not use it, so it is stopped where systemd runs it.
if [[ " ${missing[*]} " == *" orthanc "* ]] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now orthanc >/dev/null 2>&1 || true
fi
