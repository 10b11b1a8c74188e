#!/bin/bash
# keepalived's check of HAProxy (rendered by kubeprem): exit 0 when the
# loopback monitor URI answers HTTP 200.
exec 3<>/dev/tcp/127.0.0.1/8404 || exit 1
printf 'GET /healthz HTTP/1.0\r\n\r\n' >&3
read -r _ status _ <&3
[ "$status" = 200 ]
