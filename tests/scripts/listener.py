"""A TCP listener for one connection: says when it listens (and on which port, for port 0),
answers one line with `pong`."""
import socket
import sys

with socket.create_server((sys.argv[1], int(sys.argv[2]))) as server:
    print("listening" if sys.argv[2] != "0" else f"listening {server.getsockname()[1]}", flush=True)
    connection, _ = server.accept()
    with connection:
        connection.makefile().readline()
        connection.sendall(b"pong\n")
