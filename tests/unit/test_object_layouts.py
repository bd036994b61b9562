"""Where dicts, types, modules and instances keep what reading thread names takes (pyobjects'
table, with 3.13+'s published offsets in its place, interpreter.py's sys.modules offsets,
thread_names' flags and shapes), against each version's own headers compiled with offsetof:
Debian's 3.11 here and pyenv's 3.7 to 3.13 where this machine has them. Before 3.11 the dict
keys object is private to dictobject.c: its layout is checked on live processes (e2e)."""

from pathlib import Path
import subprocess

import pytest

from pybpftrace import thread_names
from pybpftrace.interpreter import read_interpreter
from pybpftrace.target import inspect_binary
from support import HOST, HOST_IS_OWN, NOT_OWN, PYENV_MINORS, pyenv_interpreter

SOURCE = r"""
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#if PY_MINOR_VERSION == 7
#include "internal/pystate.h"
#elif PY_MINOR_VERSION == 8
#include "internal/pycore_pystate.h"
#else
#include "internal/pycore_interp.h"
#endif
#if PY_MINOR_VERSION >= 10
#include "internal/pycore_moduleobject.h"
#endif
#if PY_MINOR_VERSION >= 11
#include "internal/pycore_dict.h"
#include "internal/pycore_object.h"
#endif
#define SHOW(name, value) printf("%s %ld\n", name, (long)(value))

int main(void) {
    static char memory[256];
    PyObject *object = (PyObject *)(memory + 128);  /* its pre-header before it */
    SHOW("dict_keys", offsetof(PyDictObject, ma_keys));
    SHOW("dict_values", offsetof(PyDictObject, ma_values));
    SHOW("tp_basicsize", offsetof(PyTypeObject, tp_basicsize));
    SHOW("tp_flags", offsetof(PyTypeObject, tp_flags));
    SHOW("tp_dictoffset", offsetof(PyTypeObject, tp_dictoffset));
    SHOW("HEAPTYPE", Py_TPFLAGS_HEAPTYPE);
#if PY_MINOR_VERSION >= 12
    SHOW("interp_modules", offsetof(PyInterpreterState, imports.modules));
#else
    SHOW("interp_modules", offsetof(PyInterpreterState, modules));
#endif
#if PY_MINOR_VERSION >= 10
    SHOW("module_dict", offsetof(PyModuleObject, md_dict));
#endif
#if PY_MINOR_VERSION >= 11
    SHOW("cached_keys", offsetof(PyHeapTypeObject, ht_cached_keys));
    SHOW("keys_size", offsetof(PyDictKeysObject, dk_log2_size));
    SHOW("keys_index_bytes", offsetof(PyDictKeysObject, dk_log2_index_bytes));
    SHOW("keys_kind", offsetof(PyDictKeysObject, dk_kind));
    SHOW("keys_nentries", offsetof(PyDictKeysObject, dk_nentries));
    SHOW("keys_indices", offsetof(PyDictKeysObject, dk_indices));
    SHOW("GENERAL_ENTRY", sizeof(PyDictKeyEntry));
    SHOW("UNICODE_ENTRY", sizeof(PyDictUnicodeEntry));
    SHOW("KEYS_GENERAL", DICT_KEYS_GENERAL);
    SHOW("KEYS_UNICODE", DICT_KEYS_UNICODE);
    SHOW("KEYS_SPLIT", DICT_KEYS_SPLIT);
    SHOW("values_start", offsetof(PyDictValues, values));
    SHOW("MANAGED_DICT", Py_TPFLAGS_MANAGED_DICT);
#endif
#if PY_MINOR_VERSION == 11
    SHOW("managed_dict", (char *)_PyObject_ManagedDictPointer(object) - (char *)object);
    SHOW("managed_values", (char *)_PyObject_ValuesPointer(object) - (char *)object);
#elif PY_MINOR_VERSION == 12
    SHOW("managed_dict", (char *)_PyObject_DictOrValuesPointer(object) - (char *)object);
    PyDictOrValues tagged;
    _PyDictOrValues_SetValues(&tagged, (PyDictValues *)memory);
    SHOW("values_tag", tagged.values - memory);
#elif PY_MINOR_VERSION >= 13
    SHOW("managed_dict", MANAGED_DICT_OFFSET);
    SHOW("values_valid", offsetof(PyDictValues, valid));
    SHOW("INLINE_VALUES", Py_TPFLAGS_INLINE_VALUES);
#endif
    return 0;
}
"""
LAYOUT_FIELDS = ("dict_keys", "dict_values", "tp_basicsize", "tp_flags", "tp_dictoffset", "module_dict", "cached_keys",
                 "keys_size", "keys_index_bytes", "keys_kind", "keys_nentries", "keys_indices", "values_start",
                 "managed_dict", "managed_values", "values_valid")
CONSTANTS = ("HEAPTYPE", "MANAGED_DICT", "INLINE_VALUES", "GENERAL_ENTRY", "UNICODE_ENTRY", "KEYS_GENERAL",
             "KEYS_UNICODE", "KEYS_SPLIT")


def headers_and_binary(version):
    """The include directory of a CPython and the binary holding its _PyRuntime."""
    if version == HOST.version:
        if not HOST_IS_OWN:
            pytest.skip(f"its headers: {NOT_OWN}")
        return Path(f"/usr/include/python{version[0]}.{version[1]}"), HOST.python
    found = pyenv_interpreter(version)
    if found is None:
        pytest.skip(f"no pyenv build of {version[0]}.{version[1]} on this machine")
    root = Path(found.python).parents[1]
    (include,) = root.glob(f"include/python{version[0]}.{version[1]}*")
    (library,) = root.glob(f"lib/libpython{version[0]}.{version[1]}*.so.1.0")
    return include, str(library)


def compiled(tmp_path, include: Path) -> dict[str, int]:
    (tmp_path / "layout.c").write_text(SOURCE)
    # NDEBUG: the pre-header accessors assert on a type the made-up object does not have
    subprocess.run(["gcc", "-DNDEBUG", "-w", f"-I{include}", f"-I{include}/internal", "-o", tmp_path / "layout",
                    tmp_path / "layout.c"], check=True)
    output = subprocess.run([tmp_path / "layout"], capture_output=True, text=True, check=True).stdout
    return {name: int(value) for name, value in (line.split() for line in output.splitlines())}


def version_id(version):
    return f"{version[0]}.{version[1]}" + ("" if version == HOST.version else "-pyenv")


@pytest.mark.parametrize("version", [HOST.version, *PYENV_MINORS], ids=version_id)
def test_the_tables_are_the_headers(tmp_path, require_tools, version):
    require_tools("gcc")
    include, path = headers_and_binary(version)
    binary = inspect_binary(path)
    interpreter = read_interpreter(path, path, binary.version)
    found = compiled(tmp_path, include)
    values_tag = found.pop("values_tag", None)
    ours = {name: getattr(interpreter.objects, name) for name in LAYOUT_FIELDS if name in found}
    ours.update({name: getattr(thread_names, name) for name in CONSTANTS if name in found})
    ours["interp_modules"] = interpreter.interp_modules
    assert ours == found
    if version >= (3, 11):  # the table's own answer where the headers have none
        assert interpreter.objects.keys_log2
    else:
        assert not interpreter.objects.keys_log2 and set(found) == {
            "dict_keys", "dict_values", "tp_basicsize", "tp_flags", "tp_dictoffset", "HEAPTYPE", "interp_modules",
            *(["module_dict"] if version >= (3, 10) else [])}
    if version == (3, 12):  # thread_names reads values at the tagged pointer + 1
        assert values_tag == -1
