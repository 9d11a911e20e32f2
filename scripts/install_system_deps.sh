#!/usr/bin/env bash
# Debian packages the test suite needs: a real Orthanc PACS (with DICOMweb), dcmtk and dicom3tools (dciodvfy).
# Runs as root, or through sudo; a no-op when everything is already installed.
set -euo pipefail
packages=(orthanc orthanc-dicomweb dcmtk dicom3tools iproute2)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
# Debian's policy-rc.d keeps the orthanc service from starting; tests start their own server.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
