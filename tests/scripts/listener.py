"""A TCP listener for one connection: says when it listens, answers one line with `pong`."""
import socket
import sys

with socket.create_server((sys.argv[1], int(sys.argv[2]))) as server:
    print("listening", flush=True)
    connection, _ = server.accept()
    with connection:
        connection.makefile().readline()
        connection.sendall(b"pong\n")
