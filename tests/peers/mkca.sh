#!/bin/sh
# mkca.sh DIR: a throwaway PKI for the integration tests (EC P-256, fast).
#   ca.pem                      the test CA (trust this one)
#   other-ca.pem                an unrelated CA (trusted by nobody)
#   server.pem / server.key     signed by ca: DNS:localhost, IP:127.0.0.1, IP:::1
#   wronghost.pem / .key        signed by ca: DNS:wrong.example only
#   expired.pem / .key          signed by ca: localhost / 127.0.0.1 / ::1, expired
#   untrusted.pem / .key        signed by other-ca: localhost / 127.0.0.1 / ::1
# Leaf .pem files hold the leaf certificate only (the CA is the trust anchor).
set -eu

dir=${1:?usage: mkca.sh DIR}
mkdir -p "$dir"
cd "$dir"
umask 077

SAN_LOCAL='subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1'

key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# make_ca NAME CN
make_ca() {
    key "$1.key"
    openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 30 -sha256 \
        -subj "/CN=$2" \
        -addext 'basicConstraints=critical,CA:TRUE' \
        -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null
}

# leaf NAME CA SAN
leaf() {
    key "$1.key"
    openssl req -new -key "$1.key" -subj "/CN=$1" -out "$1.csr" 2>/dev/null
    printf '%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
        "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial \
        -out "$1.pem" -days 30 -sha256 -extfile "$1.ext" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

make_ca ca 'mailconn test CA'
make_ca other-ca 'mailconn unrelated CA'
leaf server ca "$SAN_LOCAL"
leaf wronghost ca 'subjectAltName=DNS:wrong.example'
leaf untrusted other-ca "$SAN_LOCAL"

# The expired certificate: `openssl ca` takes explicit start and end dates.
mkdir -p ca-db
: > ca-db/index.txt
cat > ca-db/ca.cnf <<EOF
[ca]
default_ca = test
[test]
database = ca-db/index.txt
new_certs_dir = ca-db
serial = ca-db/serial
default_md = sha256
policy = anything
copy_extensions = none
unique_subject = no
[anything]
commonName = supplied
[leaf]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
$SAN_LOCAL
EOF
echo 01 > ca-db/serial
key expired.key
openssl req -new -key expired.key -subj '/CN=expired' -out expired.csr 2>/dev/null
openssl ca -batch -config ca-db/ca.cnf -cert ca.pem -keyfile ca.key \
    -startdate 20200101000000Z -enddate 20200201000000Z -extensions leaf \
    -notext -in expired.csr -out expired.pem 2>/dev/null
rm -rf expired.csr ca-db ca.srl other-ca.srl

chmod 644 ./*.pem
