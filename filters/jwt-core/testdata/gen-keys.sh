#!/usr/bin/env bash
# Test-only signing keys for gatehouse-jwt-core's tests. Regenerate with
# `bash gen-keys.sh`; the tests read the PEM files, never a network.
set -euo pipefail
cd "$(dirname "$0")/keys"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem 2>/dev/null
openssl pkey -in rsa.pem -pubout -out rsa.pub.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-other.pem 2>/dev/null
openssl pkey -in rsa-other.pem -pubout -out rsa-other.pub.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec256.pem
openssl pkey -in ec256.pem -pubout -out ec256.pub.pem
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out ec384.pem
openssl pkey -in ec384.pem -pubout -out ec384.pub.pem
openssl genpkey -algorithm ED25519 -out ed25519.pem
openssl pkey -in ed25519.pem -pubout -out ed25519.pub.pem
# PKCS#8 everywhere (jsonwebtoken reads EC and Ed keys as PKCS#8).
for k in rsa rsa-other ec256 ec384 ed25519; do
  openssl pkcs8 -topk8 -nocrypt -in "$k.pem" -out "$k.pk8.pem"
  mv "$k.pk8.pem" "$k.pem"
done

# The public keys as one JWKS, as an IdP would publish them.
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
rsa_n() { openssl rsa -pubin -in "$1" -noout -modulus | cut -d= -f2 | xxd -r -p | b64url; }
ec_xy() { # $1 key, $2 coordinate bytes; prints "x y"
  local hex; hex=$(openssl pkey -pubin -in "$1" -outform DER | xxd -p | tr -d '\n')
  hex=${hex: -$(( ($2 * 2 + 1) * 2 ))}; hex=${hex:2}
  echo "$(echo -n "${hex:0:$(( $2 * 2 ))}" | xxd -r -p | b64url) $(echo -n "${hex:$(( $2 * 2 ))}" | xxd -r -p | b64url)"
}
read -r x256 y256 < <(ec_xy ec256.pub.pem 32)
read -r x384 y384 < <(ec_xy ec384.pub.pem 48)
ed=$(openssl pkey -pubin -in ed25519.pub.pem -outform DER | tail -c 32 | b64url)
cat > ../jwks.json <<JSON
{"keys":[
 {"kty":"RSA","kid":"rsa-1","use":"sig","n":"$(rsa_n rsa.pub.pem)","e":"AQAB"},
 {"kty":"RSA","kid":"rsa-2","use":"sig","n":"$(rsa_n rsa-other.pub.pem)","e":"AQAB"},
 {"kty":"EC","kid":"ec-256","crv":"P-256","x":"$x256","y":"$y256"},
 {"kty":"EC","kid":"ec-384","crv":"P-384","x":"$x384","y":"$y384"},
 {"kty":"OKP","kid":"ed-1","crv":"Ed25519","x":"$ed"},
 {"kty":"RSA","kid":"enc-1","use":"enc","n":"$(rsa_n rsa.pub.pem)","e":"AQAB"}
]}
JSON
