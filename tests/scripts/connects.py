"""Connects to a TCP listener (the address in argv) and prints its answer."""
import socket
import sys


def main(host, port):
    sys.stdin.readline()  # wait for the tracer
    with socket.create_connection((host, port)) as connection:  # main connects
        connection.sendall(b"ping\n")
        print(connection.makefile().readline().strip(), flush=True)


main(sys.argv[1], int(sys.argv[2]))
