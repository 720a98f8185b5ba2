"""Replay speed: reads a stream's whole history over SSE (?since=0) with a
raw socket, so the client costs almost nothing, and prints events/s.
Usage: replay.py PORT STREAM COUNT"""
import json
import socket
import sys
import time

port, stream, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
s.sendall(f"GET /api/v1/events/stream/{stream}?since=0 HTTP/1.1\r\nHost: bench\r\n"
          "Accept: text/event-stream\r\n\r\n".encode())
t0 = time.time()
count, tail = 0, b""
while count < n:
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    data = tail + chunk
    count += data.count(b"\ndata: ")
    tail = data[-8:]
elapsed = time.time() - t0
print(json.dumps({"name": "replay_sse", "events": count, "elapsed_s": round(elapsed, 3),
                  "events_per_s": round(count / elapsed)}))
