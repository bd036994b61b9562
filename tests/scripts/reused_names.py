"""Functions made by exec and freed one after another: their name strings' addresses are soon
reused by the next ones' (argv[1]: how many)."""
import gc
import sys


def make_and_call(index):  # def make_and_call
    namespace = {}
    exec(f"def uniq_{index}():\n    return {index}\n", namespace)
    result = namespace[f"uniq_{index}"]()
    del namespace
    gc.collect()
    return result


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    print(sum(make_and_call(index) for index in range(int(sys.argv[1]))))
