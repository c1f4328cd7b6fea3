# shellcheck shell=bash
# A TLS gateway for tests, sourced by test/gateway/run.sh and test/e2e/run.sh: Debian's nginx
# terminating TLS for the name gateway.test (a certificate from a CA made here), speaking
# HTTP/2 by ALPN, and passing to UPSTREAM only the requests that carry `Authorization: KEY`
# (others get 401). Loopback only.

# gateway_certs DIR: DIR/ca.crt (the CA to trust) and DIR/gateway.{crt,key} for gateway.test.
gateway_certs() {
  local dir=$1
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=loadgate test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=gateway.test" \
    -keyout "$dir/gateway.key" -out "$dir/gateway.csr" 2>/dev/null
  printf 'subjectAltName=DNS:gateway.test\n' >"$dir/san.ext"
  openssl x509 -req -in "$dir/gateway.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/san.ext" -out "$dir/gateway.crt" 2>/dev/null
}

# gateway_start DIR PORT UPSTREAM KEY: nginx on 127.0.0.1:PORT in front of UPSTREAM
# (HOST:PORT); sets gateway_pid and waits until /health answers through it.
gateway_start() {
  local dir=$1 port=$2 upstream=$3 key=$4
  dir=$(cd "$dir" && pwd)
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events {}
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  client_body_buffer_size 1m;
  proxy_max_temp_file_size 0;
  upstream model { server $upstream; keepalive 16; }
  server {
    listen 127.0.0.1:$port ssl http2;
    server_name gateway.test;
    ssl_certificate $dir/gateway.crt;
    ssl_certificate_key $dir/gateway.key;
    location / {
      if (\$http_authorization != "$key") { return 401 '{"error":"unauthorized"}'; }
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://model;
    }
  }
}
CONF
  nginx -c "$dir/nginx.conf" -g 'daemon off;' &
  # shellcheck disable=SC2034 # read by the scripts that source this one
  gateway_pid=$!
  local _
  for _ in $(seq 240); do
    curl -fsS --cacert "$dir/ca.crt" --resolve "gateway.test:$port:127.0.0.1" \
      -H "Authorization: $key" "https://gateway.test:$port/health" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  echo "the gateway on 127.0.0.1:$port did not answer /health through to $upstream" >&2
  return 1
}
