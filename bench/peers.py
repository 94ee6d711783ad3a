"""Configuration of the peers guard is compared with: nginx (as a static upstream and as a reverse
proxy), haproxy, and the kubeconfig `kubectl proxy` forwards with. Each is tuned the way an operator
would run it in front of an api-server: keep-alive to the upstream, no access log.
It only renders text; starting the programs is bench.targets' job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.upstream import POD_BYTES, TOKEN_REVIEW


def _nginx_frame(prefix: Path, workers: str, server: str) -> str:
    # Running as root, nginx would switch its workers to `nobody`, who cannot write the prefix.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"  {kind}_temp_path {prefix}/{kind}_temp;"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 16384; multi_accept on; }}
http {{
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
{temp}
{server}
}}
"""


def nginx_static(prefix: Path, port: int) -> str:
    """nginx answering the small GET and TokenReviews from memory, one worker (the fast upstream)."""
    pod = POD_BYTES.decode()
    review = json.dumps(TOKEN_REVIEW)
    server = f"""  server {{
    listen 127.0.0.1:{port} backlog=4096;
    default_type application/json;
    location / {{ return 200 '{pod}'; }}
    location = /apis/authentication.k8s.io/v1/tokenreviews {{ return 201 '{review}'; }}
  }}"""
    return _nginx_frame(prefix, "1", server)


def nginx_proxy(prefix: Path, port: int, upstream: int) -> str:
    """nginx as a plain reverse proxy with a keep-alive upstream pool."""
    server = f"""  upstream api {{ server 127.0.0.1:{upstream}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}"""
    return _nginx_frame(prefix, "auto", server)


def haproxy(port: int, upstream: int) -> str:
    """haproxy in http mode, keep-alive both sides, connection reuse to the upstream."""
    return f"""global
  # haproxy reserves two descriptors per connection; stay within the usual 20,000 open-files limit.
  maxconn 8000
defaults
  mode http
  option http-keep-alive
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend bench
  bind 127.0.0.1:{port}
  default_backend api
backend api
  http-reuse always
  server api1 127.0.0.1:{upstream}
"""


def kubeconfig(upstream: int, token: str) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: bench
  cluster: {{server: "http://127.0.0.1:{upstream}"}}
users:
- name: bench
  user: {{token: {token}}}
contexts:
- name: bench
  context: {{cluster: bench, user: bench}}
current-context: bench
"""
