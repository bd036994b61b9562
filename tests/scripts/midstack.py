"""Blocked three calls deep when the tracer attaches: outer -> inner -> waiting."""
import sys


def helper():  # def helper
    return 1  # helper returns


def waiting():  # def waiting
    sys.stdin.readline()  # wait for the tracer
    return helper()  # waiting returns


def sibling():  # def sibling
    return 2  # sibling returns


def inner():  # def inner
    value = waiting()  # inner calls waiting
    return value + sibling()  # inner returns


def outer():  # def outer
    return inner()  # outer returns


print(outer())  # module ends
