#!/usr/bin/env bash
# Makes the certificates of a coordinator cluster with openssl: a cluster CA and one certificate per node, each valid
# for both TLS server and client authentication (members authenticate each other: mutual TLS), with the node's names
# and addresses as subject alternative names (for HTTPS clients that check host names).
#
#   scripts/deploy/make-certs.sh ca   DIR [DAYS]                   DIR/ca.crt + DIR/ca.key (the CA key: keep it offline)
#   scripts/deploy/make-certs.sh node DIR NAME [SAN...] [--days N] DIR/NAME.crt + DIR/NAME.key (+ DIR/NAME.pfx with --pfx)
#   scripts/deploy/make-certs.sh bundle OUT CA.crt [CA.crt...]      a trust bundle (two CAs while the CA is rotated)
#
# SAN entries: IP addresses (10.0.0.11) or DNS names (hv01.example.internal); NAME is always added as a DNS name.
# Keys are EC P-256, written with mode 600 (the node refuses a key file that group or others may read).
# --pfx also writes a PKCS#12 file for the Windows certificate store (Import-PfxCertificate), protected by the password
# in $PFX_PASSWORD (required with --pfx; never put on the command line).
#
# Site file of a node (see README "Security"):
#   coordinator.security { certificate { file = "hv01.crt", key-file = "hv01.key" }, trust.ca-file = "ca.crt" }
set -euo pipefail
umask 077

usage() { sed -n '2,14p' "$0" >&2; exit 2; }
cmd=${1:-}; shift || true

case "$cmd" in
  ca)
    dir=${1:?$(usage)}; days=${2:-3650}
    mkdir -p "$dir"
    [ -e "$dir/ca.key" ] && { echo "make-certs: $dir/ca.key exists; refusing to overwrite a CA" >&2; exit 1; }
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca.key"
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$days" -subj "/CN=Hyper-V coordinator cluster CA $(date -u +%Y-%m-%d)" \
      -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$dir/ca.crt"
    chmod 644 "$dir/ca.crt"
    echo "CA: $dir/ca.crt (distribute), $dir/ca.key (keep offline)"
    ;;
  node)
    dir=${1:?$(usage)}; name=${2:?$(usage)}; shift 2
    days=397; pfx=0; sans="DNS:$name"
    while [ $# -gt 0 ]; do
      case "$1" in
        --days) days=${2:?}; shift 2 ;;
        --pfx) pfx=1; shift ;;
        *) if [[ "$1" =~ ^[0-9.]+$ || "$1" == *:* ]]; then sans="$sans,IP:$1"; else sans="$sans,DNS:$1"; fi; shift ;;
      esac
    done
    [ -f "$dir/ca.key" ] || { echo "make-certs: no CA in $dir (run: make-certs.sh ca $dir)" >&2; exit 1; }
    openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$name.key.tmp"
    # PKCS#8: the form .NET's PEM loader and most tools read.
    openssl pkcs8 -topk8 -nocrypt -in "$dir/$name.key.tmp" -out "$dir/$name.key" && rm -f "$dir/$name.key.tmp"
    openssl req -new -key "$dir/$name.key" -subj "/CN=$name" -out "$dir/$name.csr"
    ext=$(mktemp); trap 'rm -f "$ext"' EXIT
    cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyAgreement
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$sans
EXT
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days "$days" -sha256 \
      -extfile "$ext" -out "$dir/$name.crt" 2>/dev/null
    rm -f "$dir/$name.csr"
    chmod 644 "$dir/$name.crt"; chmod 600 "$dir/$name.key"
    if [ "$pfx" = 1 ]; then
      [ -n "${PFX_PASSWORD:-}" ] || { echo "make-certs: --pfx needs the password in \$PFX_PASSWORD" >&2; exit 1; }
      openssl pkcs12 -export -in "$dir/$name.crt" -inkey "$dir/$name.key" -certfile "$dir/ca.crt" \
        -passout env:PFX_PASSWORD -out "$dir/$name.pfx"
      chmod 600 "$dir/$name.pfx"
    fi
    echo "node $name: $dir/$name.crt, $dir/$name.key$([ "$pfx" = 1 ] && echo ", $dir/$name.pfx") (SAN $sans, $days days)"
    echo "  SHA-256 thumbprint (for coordinator.security.trust.pinned-thumbprints):" \
      "$(openssl x509 -in "$dir/$name.crt" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d :)"
    ;;
  bundle)
    out=${1:?$(usage)}; shift
    [ $# -ge 1 ] || usage
    cat "$@" >"$out.tmp" && chmod 644 "$out.tmp" && mv "$out.tmp" "$out"
    echo "trust bundle $out: $# CA certificate(s)"
    ;;
  *) usage ;;
esac
