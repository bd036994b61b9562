"""argv[1] threads alive at once, each inside one call of work() while all the others enter
theirs."""
import sys
import threading


def work(index, inside, done):  # def work
    inside.wait()
    done.wait()
    return index


def worker(index, ready, inside, done):  # def worker
    ready.wait()
    work(index, inside, done)


if __name__ == "__main__":
    count = int(sys.argv[1])
    threading.stack_size(64 * 1024)
    ready, inside, done = (threading.Barrier(count + 1) for _ in range(3))
    threads = [threading.Thread(target=worker, args=(index, ready, inside, done)) for index in range(count)]
    for thread in threads:
        thread.start()
    sys.stdin.readline()  # wait for the tracer, with every thread started
    ready.wait()
    inside.wait()
    done.wait()
    for thread in threads:
        thread.join()
    print(count)
