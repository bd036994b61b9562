"""Calls argv[1] distinct functions (made by exec, kept alive), each calling leaf() once, under
main()."""
import sys


def leaf():  # def leaf
    return 1


def main(count):  # def main
    namespace = {"leaf": leaf}
    exec("".join(f"def many_{index}():\n    return leaf()\n" for index in range(count)), namespace)
    functions = [namespace[f"many_{index}"] for index in range(count)]
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()  # the tracer may be stopped meanwhile
    return sum(function() for function in functions)  # many calls


if __name__ == "__main__":
    sys.stdin.readline()  # wait for the tracer
    print(main(int(sys.argv[1])))
