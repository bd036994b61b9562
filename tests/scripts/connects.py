"""Connects to a TCP listener (the address in argv), then waits (a line on stdin) so that the
tracer can still read type names from its memory."""
import socket
import sys


def main(host, port):
    sys.stdin.readline()  # wait for the tracer
    with socket.create_connection((host, port)) as connection:
        connection.sendall(b"ping\n")
        print(connection.makefile().readline().strip(), flush=True)
    sys.stdin.readline()  # wait until the tracer has shown the event


main(sys.argv[1], int(sys.argv[2]))
